// npm run bench:formats — throughput of the format core on ~200 MB workloads (random and compressible data),
// side by side with peers measured in the same run on the same files: `cp` (copying the input, the floor any
// conversion pays for reading and writing), `xxhsum -H2` (XXH3-128 of a file) and WalB's published figures for
// this machine class. Prints a table and, last, one JSON line. Its last column, "others %", is the CPU other
// processes used during a row's timed runs (% of one core): on a 2-core machine, a row measured while it is high
// is slower than on an idle machine, and a note on stderr says so.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../src/native';

const MB = 1e6;
const RUNS = Number(process.env.WALB_BENCH_RUNS ?? 3);
const AMOUNT = Number(process.env.WALB_BENCH_AMOUNT_MB ?? 200) * 2 ** 20;
const DEVICE = 1 << 30; // the workloads address a 1 GiB device

// WalB's own tools on this machine class (issue figures, MB/s).
const WALB: Record<string, number> = {
  'wlog-to-wdiff-sorted': 330,
  'wlog-to-wdiff-indexed': 390,
  'wdiff-merge-2': 825,
  'wdiff-redo': 210,
};

function benchDir(): string {
  const base = process.env.WALB_BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  return fs.mkdtempSync(path.join(base, 'walb-bench-'));
}

// CPU time in ms: all CPUs busy (from /proc/stat, 10 ms ticks) and this process with its reaped children.
function cpuNow(): { busy: number; own: number } {
  try {
    const t = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const self = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ').map(Number);
    const u = process.cpuUsage();
    // user nice system irq softirq steal; the children's utime and stime (fields 16 and 17)
    return {
      busy: (t[0] + t[1] + t[2] + t[5] + t[6] + t[7]) * 10,
      own: (u.user + u.system) / 1000 + (self[13] + self[14]) * 10,
    };
  } catch {
    return { busy: 0, own: 0 }; // not Linux: no figure
  }
}

interface Timing {
  ms: number; // median of the runs
  othersPct: number; // CPU other processes used meanwhile, in % of one core (they slow a 2-core machine)
}

async function best(run: () => Promise<unknown>, before?: () => void): Promise<Timing> {
  const times: number[] = [];
  let others = 0;
  for (let i = 0; i < RUNS; i++) {
    before?.();
    const c0 = cpuNow();
    const t0 = process.hrtime.bigint();
    await run();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c1 = cpuNow();
    others += c1.busy - c0.busy - (c1.own - c0.own);
  }
  const total = times.reduce((a, b) => a + b, 0);
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], othersPct: Math.max(0, (100 * others) / total) };
}

function size(p: string): number {
  return fs.statSync(p).size;
}

function timeCommand(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  execFileSync(cmd, args, { stdio: 'ignore' });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Row {
  data: string;
  op: string;
  bytes: number;
  ms: number;
  mbps: number;
  peer?: string;
  peerMbps?: number;
  walbMbps?: number;
  othersPct: number;
}

async function main(): Promise<void> {
  const dir = benchDir();
  const rows: Row[] = [];
  const f = (name: string) => path.join(dir, name);
  try {
    console.error(
      `bench dir ${dir} (${fs.existsSync('/dev/shm') && dir.startsWith('/dev/shm') ? 'tmpfs' : 'disk'}), ${RUNS} runs each, median`,
    );
    for (const data of ['random', 'compressible'] as const) {
      const a = f(`${data}-a.wlog`);
      const b = f(`${data}-b.wlog`);
      const common = {
        deviceSize: DEVICE / 512,
        amount: AMOUNT,
        maxIoSize: 128,
        overlapRatio: 0.2,
        data,
        discardRatio: 0.01,
      };
      const ga = await native.wlogGen(a, { ...common, seed: 11 });
      await native.wlogGen(b, { ...common, seed: 12, lsid: ga.endLsid });
      const row = (op: string, bytes: number, { ms, othersPct }: Timing, extra: Partial<Row> = {}) => {
        rows.push({
          data,
          op,
          bytes,
          ms,
          mbps: bytes / MB / (ms / 1000),
          walbMbps: WALB[op],
          othersPct,
          ...extra,
        });
      };
      const { ms: cpMs } = await best(
        async () => timeCommand('cp', [a, f('copy')]),
        () => fs.rmSync(f('copy'), { force: true }),
      );
      const cpMbps = size(a) / MB / (cpMs / 1000);

      // Outputs are removed before each run: replacing a file would add the freeing of the old one.
      const fresh =
        (...names: string[]) =>
        () =>
          names.forEach((n) => fs.rmSync(f(n), { force: true }));
      let t = await best(() => native.wlogToWdiff([a], f('a.wdiff'), {}), fresh('a.wdiff'));
      row('wlog-to-wdiff-sorted', size(a), t, { peer: 'cp', peerMbps: cpMbps });
      t = await best(() => native.wlogToWdiff([a], f('ai.wdiff'), { indexed: true }), fresh('ai.wdiff'));
      row('wlog-to-wdiff-indexed', size(a), t, { peer: 'cp', peerMbps: cpMbps });
      await native.wlogToWdiff([b], f('b.wdiff'), {});
      // Drop the files no longer needed: on tmpfs they hold memory.
      for (const n of [a, b, f('copy'), f('ai.wdiff')]) fs.rmSync(n, { force: true });
      const mergeIn = size(f('a.wdiff')) + size(f('b.wdiff'));
      t = await best(
        () => native.wdiffMerge([f('a.wdiff'), f('b.wdiff')], f('m.wdiff'), {}),
        fresh('m.wdiff'),
      );
      row('wdiff-merge-2', mergeIn, t);
      const image = f('image');
      t = await best(
        () => native.wdiffRedo(f('a.wdiff'), image, {}),
        () => {
          fs.rmSync(image, { force: true });
          fs.writeFileSync(image, '');
          fs.truncateSync(image, DEVICE);
        },
      );
      row('wdiff-redo', size(f('a.wdiff')), t);
      const base = f('base');
      fs.writeFileSync(base, '');
      fs.truncateSync(base, DEVICE);
      const vf = new native.VirtualFull(base, [f('a.wdiff'), f('b.wdiff')]);
      try {
        t = await best(async () => {
          for (let off = 0; off < DEVICE; off += 4 << 20) await vf.read({ offset: off, length: 4 << 20 });
        });
      } finally {
        vf.close();
      }
      row('virtual-full-read', DEVICE, t);
      // Hash a dense image: the redo result has holes, so fill it with the workload's bytes first.
      const dense = f('dense');
      for (const n of ['image', 'm.wdiff']) fs.rmSync(f(n), { force: true });
      execFileSync('sh', [
        '-c',
        `for i in 1 2 3 4; do cat "${f('a.wdiff')}" "${f('b.wdiff')}"; done | head -c ${DEVICE} > "${dense}"`,
      ]);
      t = await best(() => native.hashImage(dense, { chunks: true }));
      let peerMbps: number | undefined;
      if (hasCommand('xxhsum')) {
        const { ms: xms } = await best(async () => timeCommand('xxhsum', ['-H2', dense]));
        peerMbps = DEVICE / MB / (xms / 1000);
      }
      row('hash-xxh3-128', DEVICE, t, { peer: peerMbps ? 'xxhsum -H2' : undefined, peerMbps });
      for (const p of fs.readdirSync(dir)) fs.rmSync(path.join(dir, p), { force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const fmt = (x: number | undefined, d = 0) => (x === undefined ? '-' : x.toFixed(d));
  console.log(
    [
      'data',
      'operation',
      'MB',
      'ms',
      'MB/s',
      'WalB MB/s',
      'x WalB',
      'peer',
      'peer MB/s',
      'x peer',
      'others %',
    ]
      .map((h, i) => (i < 2 || i === 7 ? h.padEnd(i === 1 ? 22 : 12) : h.padStart(10)))
      .join(' '),
  );
  for (const r of rows) {
    console.log(
      [
        r.data.padEnd(12),
        r.op.padEnd(22),
        fmt(r.bytes / MB).padStart(10),
        fmt(r.ms).padStart(10),
        fmt(r.mbps).padStart(10),
        fmt(r.walbMbps).padStart(10),
        fmt(r.walbMbps ? r.mbps / r.walbMbps : undefined, 2).padStart(10),
        (r.peer ?? '-').padEnd(12),
        fmt(r.peerMbps).padStart(10),
        fmt(r.peerMbps ? r.mbps / r.peerMbps : undefined, 2).padStart(10),
        fmt(r.othersPct).padStart(10),
      ].join(' '),
    );
  }
  const busy = rows.filter((r) => r.othersPct >= 15);
  if (busy.length > 0) {
    console.error(
      `note: other processes used ${busy.map((r) => `${r.othersPct.toFixed(0)}%`).join(', ')} of a CPU during ` +
        `${busy.length} row(s) (column "others %"); on a 2-core machine that lowers their figures, rerun when idle`,
    );
  }
  console.log(JSON.stringify({ bench: 'formats', runs: RUNS, amountBytes: AMOUNT, rows }));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
