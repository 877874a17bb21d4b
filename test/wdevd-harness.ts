// Runs walb-wdevd as a real process for tests: start, SIGKILL, restart on the same directories, and a control
// client. Everything lives in one temporary directory.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../src/native';
import { WdevClient } from '../src/wdev/client';
import { ROOT } from './processes';
import { waitUntil } from './waiting';

export const WDEVD = path.join(ROOT, 'dist', 'src', 'bin', 'walb-wdevd.js');
export const WDEVC = path.join(ROOT, 'dist', 'src', 'bin', 'wdevc.js');

export class Wdevd {
  proc: ChildProcess | undefined;
  client: WdevClient;
  readonly runDir: string;
  readonly stateDir: string;
  stderr = '';

  constructor(
    readonly dir: string,
    private readonly extraArgs: string[] = [],
  ) {
    this.runDir = path.join(dir, 'run');
    this.stateDir = path.join(dir, 'state');
    this.client = new WdevClient(path.join(this.runDir, 'wdevd.sock'), 20000);
  }

  get nbdSocket(): string {
    return path.join(this.runDir, 'nbd.sock');
  }

  uri(name: string): string {
    return `nbd+unix:///${encodeURIComponent(name)}?socket=${this.nbdSocket}`;
  }

  /** Starts the daemon and waits until its control API answers. */
  async start(): Promise<void> {
    const p = spawn(
      process.execPath,
      [WDEVD, '--run-dir', this.runDir, '--state-dir', this.stateDir, ...this.extraArgs],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.proc = p;
    p.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20000);
    });
    await waitUntil(
      async () => {
        if (p.exitCode !== null) throw new Error(`walb-wdevd exited with ${p.exitCode}: ${this.stderr}`);
        try {
          this.client.close();
          this.client = new WdevClient(path.join(this.runDir, 'wdevd.sock'), 20000);
          await this.client.listWdev();
          return true;
        } catch {
          return false;
        }
      },
      () => `walb-wdevd to answer on its control socket: ${this.stderr}`,
      30_000,
    );
  }

  /** SIGKILL: no drain, no checkpoint, nothing flushed by the daemon. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM: graceful stop; resolves with the exit code. */
  async stop(): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    return exited;
  }

  async cleanup(): Promise<void> {
    this.client.close();
    await this.kill();
  }
}

/** A formatted ldev and a ddev (sparse files) in `dir`; returns their paths. */
export async function makeWdevFiles(
  dir: string,
  name: string,
  opts: { ldevBytes: number; ddevBytes: number; pbs?: number },
): Promise<{ ldev: string; ddev: string }> {
  const ldev = path.join(dir, `${name}.ldev`);
  const ddev = path.join(dir, `${name}.ddev`);
  fs.writeFileSync(ldev, '');
  fs.truncateSync(ldev, opts.ldevBytes);
  fs.writeFileSync(ddev, '');
  fs.truncateSync(ddev, opts.ddevBytes);
  await native.formatLdev(ldev, { pbs: opts.pbs ?? 512, deviceSize: opts.ddevBytes / 512, name });
  return { ldev, ddev };
}
