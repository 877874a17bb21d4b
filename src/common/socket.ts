// Unix socket files of the daemons: stale ones, and the mode and group they are given.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { WalbError, errorMessage } from './errors';

/** True when `path` is a socket file that nobody accepts connections on (its process died). */
export function staleSocket(path: string): Promise<boolean> {
  try {
    if (!fs.lstatSync(path).isSocket()) return Promise.resolve(false);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** True when something accepts connections on `path`. */
export async function socketInUse(path: string): Promise<boolean> {
  try {
    if (!fs.lstatSync(path).isSocket()) return false;
  } catch {
    return false;
  }
  return !(await staleSocket(path));
}

/** Who may connect to a daemon's socket files: their mode, and their group when one is configured. */
export interface SocketAccess {
  mode: number;
  /** undefined: the process's own group (no chown). */
  gid?: number;
}

/**
 * The access of the config's `sockets` block: mode as octal text ("0660"), group as a name or a number ('' for the
 * process's group). An unknown group is a CONFIG error naming `sockets.group`.
 */
export function socketAccess(sockets: { mode: string; group: string }): SocketAccess {
  const mode = parseInt(sockets.mode, 8);
  if (!sockets.group) return { mode };
  if (/^\d+$/.test(sockets.group)) return { mode, gid: Number(sockets.group) };
  let entry: string;
  try {
    // getent asks NSS, so groups from LDAP or systemd's dynamic users resolve as well as /etc/group's.
    entry = execFileSync('getent', ['group', sockets.group], { encoding: 'utf8' });
  } catch {
    throw new WalbError('CONFIG', `sockets.group: no group named '${sockets.group}' on this machine`);
  }
  return { mode, gid: Number(entry.split(':')[2]) };
}

/** Gives a socket file just created its mode and group, before anyone is told it is there. */
export function applySocketAccess(path: string, access: SocketAccess): void {
  try {
    if (access.gid !== undefined) fs.chownSync(path, -1, access.gid);
    fs.chmodSync(path, access.mode);
  } catch (err) {
    throw new WalbError(
      'CONFIG',
      `sockets: cannot give ${path} mode ${access.mode.toString(8)}` +
        `${access.gid === undefined ? '' : ` and group ${access.gid}`}: ${errorMessage(err)}`,
    );
  }
}
