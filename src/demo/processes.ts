// Server processes for the demo and the benchmarks: free loopback ports, start a binary of this checkout and wait
// for its "started" log line, a whole one-of-each group in a work directory, stop them all.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export class Processes {
  readonly all: ChildProcess[] = [];

  /** Starts dist/src/bin/BIN.js with stderr to `logFile` and waits until it logs "started". */
  async server(bin: string, args: string[], logFile: string): Promise<ChildProcess> {
    const out = fs.openSync(logFile, 'a');
    const p = spawn(
      process.execPath,
      [
        // For profiling the servers, e.g. WALB_NODE_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof'.
        ...(process.env.WALB_NODE_FLAGS ? process.env.WALB_NODE_FLAGS.split(' ').filter(Boolean) : []),
        path.join(ROOT, 'dist', 'src', 'bin', `${bin}.js`),
        ...args,
      ],
      {
        stdio: ['ignore', 'ignore', out],
      },
    );
    this.all.push(p);
    const deadline = Date.now() + 30000;
    while (!fs.readFileSync(logFile, 'utf8').includes('"event":"started"')) {
      if (p.exitCode !== null) throw new Error(`${bin} exited: ${fs.readFileSync(logFile, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`${bin} did not start`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return p;
  }

  /** SIGTERM, newest first; SIGKILL for what has not exited after a grace period. */
  async stopAll(graceMs = 1500): Promise<void> {
    for (const p of [...this.all].reverse()) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, graceMs));
    for (const p of this.all) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}

/** The servers of a one-of-each group started by startLocalGroup. */
export interface LocalGroup {
  archive: string;
  proxy: string;
  storage: string;
  /** walb-wdevd's control socket (its NBD socket is beside it). */
  wdevdSocket: string;
  runDir: string;
  archiveProc: ChildProcess;
  proxyProc: ChildProcess;
  storageProc: ChildProcess;
  /** Each server's log: `<work>/<name>.log`. */
  log(name: 'wdevd' | 'archive' | 'proxy' | 'storage'): string;
}

/**
 * walb-wdevd, walb-archive, walb-proxy and walb-storage on free loopback ports, their data and logs in `work`, the
 * storage pointed at the archive and the proxy.
 */
export async function startLocalGroup(procs: Processes, work: string): Promise<LocalGroup> {
  const addr = async () => `127.0.0.1:${await freePort()}`;
  const [archive, proxy, storage] = [await addr(), await addr(), await addr()];
  const runDir = path.join(work, 'run');
  const log = (name: string) => path.join(work, `${name}.log`);
  const dataDir = (name: string) => path.join(work, name);
  await procs.server('walb-wdevd', ['--run-dir', runDir, '--state-dir', dataDir('wdevd')], log('wdevd'));
  const archiveProc = await procs.server(
    'walb-archive',
    ['--listen', archive, '--data-dir', dataDir('archive')],
    log('archive'),
  );
  const proxyProc = await procs.server(
    'walb-proxy',
    ['--listen', proxy, '--data-dir', dataDir('proxy')],
    log('proxy'),
  );
  const wdevdSocket = path.join(runDir, 'wdevd.sock');
  const storageProc = await procs.server(
    'walb-storage',
    [
      ...['--listen', storage, '--data-dir', dataDir('storage')],
      ...['--archive', archive, '--proxy', proxy, '--wdevd-socket', wdevdSocket],
    ],
    log('storage'),
  );
  return { archive, proxy, storage, wdevdSocket, runDir, archiveProc, proxyProc, storageProc, log };
}
