// npm run bench:wdev — a wdev served by walb-wdevd against `nbdkit file` serving a file on the same file system,
// driven by fio's nbd engine in the same run: 4 KiB random writes at queue depth 32 (IOPS) and 1 MiB sequential
// writes (MB/s). A wdev writes every byte twice (log, then data device), nbdkit once. Each workload runs for a
// fixed time, alternating between the two servers; the median of the runs is reported. Prints a table and,
// last, one JSON line.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../src/native';
import { WdevClient } from '../src/wdev/client';
import { waitUntil } from '../test/waiting';
import { median } from './measure';

const RUNS = Number(process.env.WALB_BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.WALB_BENCH_SECONDS ?? 8);
const DEVICE = 1 << 30;
const LDEV = 512 << 20;
const ROOT = path.resolve(__dirname, '..', '..');

function benchDir(): string {
  const base = process.env.WALB_BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  return fs.mkdtempSync(path.join(base, 'walb-bench-wdev-'));
}

function sparse(file: string, bytes: number): string {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

function fio(uri: string, args: string[]): Promise<{ iops: number; mbps: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      'fio',
      [
        '--name=bench',
        '--ioengine=nbd',
        `--uri=${uri}`,
        `--size=${DEVICE}`,
        `--runtime=${SECONDS}`,
        '--time_based',
        '--output-format=json',
        ...args,
      ],
      { maxBuffer: 16 << 20 },
      (err, stdout) => {
        if (err) return reject(err);
        const json = JSON.parse(stdout.slice(stdout.indexOf('{')));
        const w = json.jobs[0].write;
        resolve({ iops: w.iops, mbps: w.bw_bytes / 1e6 });
      },
    );
  });
}

async function main(): Promise<void> {
  const dir = benchDir();
  const procs: ChildProcess[] = [];
  try {
    const runDir = path.join(dir, 'run');
    const wdevd = spawn(
      process.execPath,
      [
        path.join(ROOT, 'dist', 'src', 'bin', 'walb-wdevd.js'),
        '--run-dir',
        runDir,
        '--state-dir',
        path.join(dir, 'state'),
      ],
      { stdio: 'ignore' },
    );
    procs.push(wdevd);
    const client = new WdevClient(path.join(runDir, 'wdevd.sock'), 20000);
    await waitUntil(
      () =>
        client.listWdev().then(
          () => true,
          () => false,
        ),
      'walb-wdevd',
    );
    const ldev = sparse(path.join(dir, 'bench.ldev'), LDEV);
    const ddev = sparse(path.join(dir, 'bench.ddev'), DEVICE);
    await native.formatLdev(ldev, { pbs: 4096, deviceSize: DEVICE / 512, name: 'bench' });
    await client.createWdev({ ldev, ddev, name: 'bench' });
    const nbdkitSock = path.join(dir, 'nbdkit.sock');
    const image = sparse(path.join(dir, 'nbdkit.img'), DEVICE);
    procs.push(spawn('nbdkit', ['--foreground', '--unix', nbdkitSock, 'file', image], { stdio: 'ignore' }));
    await waitUntil(async () => fs.existsSync(nbdkitSock), 'nbdkit');
    const uris = {
      wdev: `nbd+unix:///bench?socket=${path.join(runDir, 'nbd.sock')}`,
      nbdkit: `nbd+unix:///?socket=${nbdkitSock}`,
    };
    const workloads = {
      'randwrite-4k-qd32': ['--rw=randwrite', '--bs=4k', '--iodepth=32'],
      'write-1m-qd8': ['--rw=write', '--bs=1M', '--iodepth=8'],
    };
    const results: Record<string, { wdev: number[]; nbdkit: number[] }> = {};
    for (const [name, args] of Object.entries(workloads)) {
      results[name] = { wdev: [], nbdkit: [] };
      for (let i = 0; i < RUNS; i++) {
        for (const server of ['wdev', 'nbdkit'] as const) {
          const r = await fio(uris[server], args);
          results[name][server].push(name.startsWith('randwrite') ? r.iops : r.mbps);
          // Free the log as a storage server would, so the wdev never runs against a full ring.
          if (server === 'wdev') {
            const st = await client.takeCheckpoint('bench');
            await client.setOldestLsid('bench', st.lsids!.prevWritten);
          }
        }
      }
    }
    client.close();
    const rows = Object.entries(results).map(([name, r]) => {
      const wdev = median(r.wdev);
      const nbdkit = median(r.nbdkit);
      const unit = name.startsWith('randwrite') ? 'IOPS' : 'MB/s';
      const bar = name.startsWith('randwrite') ? 0.6 : 0.45;
      return {
        workload: name,
        unit,
        wdev: Math.round(wdev),
        nbdkit: Math.round(nbdkit),
        ratio: +(wdev / nbdkit).toFixed(2),
        bar,
      };
    });
    process.stdout.write(
      `wdev vs nbdkit file on ${path.dirname(dir)}, fio nbd engine, ${SECONDS} s per run, median of ${RUNS}\n\n`,
    );
    process.stdout.write(
      `${'workload'.padEnd(20)} ${'unit'.padEnd(5)} ${'wdev'.padStart(9)} ${'nbdkit'.padStart(9)} ${'ratio'.padStart(6)}  bar\n`,
    );
    for (const r of rows)
      process.stdout.write(
        `${r.workload.padEnd(20)} ${r.unit.padEnd(5)} ${String(r.wdev).padStart(9)} ${String(r.nbdkit).padStart(9)} ${r.ratio.toFixed(2).padStart(6)}  ${r.bar}\n`,
      );
    process.stdout.write(
      '\n' +
        JSON.stringify({ bench: 'wdev', dir: path.dirname(dir), seconds: SECONDS, runs: RUNS, rows }) +
        '\n',
    );
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:wdev: ${(err as Error).message}\n`);
  process.exit(1);
});
