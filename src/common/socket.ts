// Unix socket files of the daemons.
import fs from 'node:fs';
import net from 'node:net';

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
