// Server processes of the backup group for tests: start on a free loopback port, wait for "started", SIGKILL,
// restart on the same data. And gRPC clients for them.
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { connect, loadProto } from '../src/common/grpc';
import type { ProtoGrpcType as ArchiveProto } from '../src/generated/archive';
import type { ProtoGrpcType as CommonProto } from '../src/generated/common';
import type { ProtoGrpcType as ProxyProto } from '../src/generated/proxy';
import type { ProtoGrpcType as StorageProto } from '../src/generated/storage';
import { ROOT, run, type RunResult } from './processes';
import { waitUntil } from './waiting';

/** The server reflection proto (v1) shipped with @grpc/reflection, for clients that speak it as grpcurl does. */
export const REFLECTION_PROTO = path.join(
  path.dirname(require.resolve('@grpc/reflection/package.json')),
  'build',
  'proto',
  'grpc',
  'reflection',
  'v1',
  'reflection.proto',
);

export const WALBC = path.join(ROOT, 'dist', 'src', 'bin', 'walbc.js');

/** What walbcOn asserts with: ava's test context, or outside ava (the soak) a check that throws. */
export interface Checks {
  is(actual: unknown, expected: unknown, message?: string): unknown;
}

/** walbc on a layout file: `run` gives the whole result; `ok` asserts exit 0 and returns stdout, trimmed. */
export function walbcOn(
  t: Checks,
  layout: string,
): { run(...args: string[]): Promise<RunResult>; ok(...args: string[]): Promise<string> } {
  const runIt = (...args: string[]) => run(process.execPath, [WALBC, ...args, '-l', layout]);
  return {
    run: runIt,
    ok: async (...args: string[]) => {
      const r = await runIt(...args);
      t.is(r.code, 0, `walbc ${args.join(' ')}: ${r.stderr}`);
      return r.stdout.trim();
    },
  };
}

/**
 * Waits until operation `id` on the server at `address` is running and `cond` holds for its progress; fails at once
 * when it is no longer running. It asks the server's Operations service itself: a poll costs milliseconds, where a
 * walbc process costs seconds on a loaded machine and lets the operation run on past what the test waits for.
 */
export async function operationRunningUntil(
  address: string,
  id: string,
  cond: (progress: { done: number; total: number }) => boolean,
  what: string,
): Promise<void> {
  const ops = operationsClient(address);
  try {
    await waitUntil(async () => {
      const op = await ops.Get({ id });
      if (op.state !== 'running')
        throw new Error(`operation ${id} is no longer running: ${JSON.stringify(op)}`);
      return cond({ done: op.done, total: op.total });
    }, what);
  } finally {
    ops.close();
  }
}

/** Waits until operation `id` on the server at `address` is running and half-way (some of its work done, not all). */
export function operationHalfWay(address: string, id: string): Promise<void> {
  return operationRunningUntil(
    address,
    id,
    ({ done, total }) => done > 0 && done < total,
    `operation ${id} half-way`,
  );
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export class ServerProc {
  proc: ChildProcess | undefined;
  stderr = '';
  constructor(
    readonly binary: 'walb-archive' | 'walb-proxy' | 'walb-storage',
    readonly dataDir: string,
    /** May change at the first start, when the free port chosen was taken meanwhile (see start). */
    public port: number,
    readonly extra: string[] = [],
  ) {}

  private startedOnce = false;

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /**
   * Starts the server and waits for its "started" line. A port found free may be taken by someone else before the
   * server binds it (any outgoing connection of the machine may get it): at the first start another free port is
   * tried; at a restart, whose address the others know, the same port again after a moment.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce();
        this.startedOnce = true;
        return;
      } catch (err) {
        if (!this.stderr.includes('EADDRINUSE') || attempt >= 10) throw err;
        if (this.startedOnce) await new Promise((r) => setTimeout(r, 500));
        else this.port = await freePort();
      }
    }
  }

  private async startOnce(): Promise<void> {
    this.stderr = '';
    const bin = path.join(ROOT, 'dist', 'src', 'bin', `${this.binary}.js`);
    this.proc = spawn(
      process.execPath,
      [bin, '--listen', this.address, '--data-dir', this.dataDir, ...this.extra],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    // The whole log also goes next to the data directory, for a post-mortem with WALB_KEEP_TEST_DIRS=1.
    const logFile = `${this.dataDir}.log`;
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-100_000);
      fs.appendFileSync(logFile, d);
    });
    const proc = this.proc;
    await waitUntil(
      () => {
        if (proc.exitCode !== null) throw new Error(`${this.binary} exited: ${this.stderr}`);
        return this.stderr.includes('"event":"started"');
      },
      () => `${this.binary} to start: ${this.stderr}`,
      20_000,
    );
  }

  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }
}

const insecure = grpc.credentials.createInsecure();

export function archiveClient(address: string) {
  return connect(loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive, address, insecure);
}

export function proxyClient(address: string) {
  return connect(loadProto<ProxyProto>('walb/v1/proxy.proto').proto.walb.v1.Proxy, address, insecure);
}

export function storageClient(address: string) {
  return connect(loadProto<StorageProto>('walb/v1/storage.proto').proto.walb.v1.Storage, address, insecure);
}

export function operationsClient(address: string) {
  return connect(loadProto<CommonProto>('walb/v1/common.proto').proto.walb.v1.Operations, address, insecure);
}
