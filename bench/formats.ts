// npm run bench:formats — walb-tool side by side with WalB's own tools (walb-tools 1.0.19, docs/testing.md) on the
// same files in the same run: whole processes (walb-tool is a native program), alternating, medians of
// WALB_BENCH_RUNS, and the addon called in-process (the servers' path) in its own column. Prints a table and,
// last, one JSON line.
// Its column "others %" is the CPU other processes used during a row's timed runs (% of one core): on a 2-core
// machine a row measured while it is high is slower than on an idle machine, and a note on stderr says so.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { native } from '../src/native';
import { median } from './measure';
import { childCpu, type RunReply, type RunRequest } from './process-runner';

const MB = 1e6;
const MIB = 2 ** 20;
const RUNS = Number(process.env.WALB_BENCH_RUNS ?? 5);
const AMOUNTS_MB = (process.env.WALB_BENCH_AMOUNTS_MB ?? '200,800').split(',').map(Number);
const DEVICE = 4 * 2 ** 30; // the workloads address a 4 GiB device, which is also the virtual full image read
const ROOT = path.resolve(__dirname, '..', '..');
const WALB_TOOL = path.join(ROOT, 'build', 'Release', 'walb-tool'); // native (native/src/tool)
const ORACLE_BIN =
  process.env.WALB_ORACLE_BIN ?? path.resolve(ROOT, '..', 'shared', 'oracle', 'walb-tools-1.0.19', 'bin');

type Side = 'tool' | 'walb' | 'addon';

// The table's order of the rows of a case (they run in another: the workloads of the merges come last).
const OPERATIONS = [
  'wlog-to-wdiff-sorted',
  'wlog-to-wdiff-indexed',
  'wdiff-merge-2',
  'wdiff-merge-8',
  'wdiff-redo',
  'wlog-redo',
  'virtual-full-read',
];

function benchDir(): string {
  const base = process.env.WALB_BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  return fs.mkdtempSync(path.join(base, 'walb-bench-'));
}

// CPU time in ms: all CPUs busy (from /proc/stat, 10 ms ticks), this process with its reaped children, and this
// process's system time.
function cpuNow(): { busy: number; own: number; sys: number } {
  try {
    const t = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const children = childCpu();
    const u = process.cpuUsage();
    // user nice system irq softirq steal
    return {
      busy: (t[0] + t[1] + t[2] + t[5] + t[6] + t[7]) * 10,
      own: (u.user + u.system) / 1000 + children.user + children.sys,
      sys: u.system / 1000,
    };
  } catch {
    return { busy: 0, own: 0, sys: 0 }; // not Linux: no figure
  }
}

// WalB's virt-full-cat syncs its output after writing all of it and exits 1 when that output cannot be synced
// (/dev/null, a pipe); that one failure, alone on stderr, is accepted: the bytes it wrote are checked.
const UNSYNCABLE_OUTPUT = /^.*ERROR virt-full-cat:fdsync failed\. .*Invalid argument$/;

function acceptedExit(code: number | null, stderr: string, unsyncableOutput: boolean): boolean {
  if (code === 0) return true;
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  return unsyncableOutput && code === 1 && lines.length > 0 && lines.every((l) => UNSYNCABLE_OUTPUT.test(l));
}

/**
 * Starts the timed whole processes from bench/process-runner.ts, a small process of its own: forking this one,
 * which holds the in-process side's buffers, would add the copy of its page tables to every run.
 */
class ProcessRunner {
  private readonly child = spawn(process.execPath, [path.join(__dirname, 'process-runner.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  private readonly replies = readline.createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();

  /** Runs `cmd` to its end; fails on a non-zero exit with its stderr. */
  async run(cmd: string, args: string[], unsyncableOutput = false, env = process.env): Promise<RunReply> {
    this.child.stdin!.write(JSON.stringify({ cmd, args, env } satisfies RunRequest) + '\n');
    const { value, done } = await this.replies.next();
    if (done) throw new Error('the process runner ended');
    const r = JSON.parse(value as string) as RunReply;
    if (r.error) throw new Error(`${path.basename(cmd)}: ${r.error}`);
    if (!acceptedExit(r.status, r.stderr, unsyncableOutput)) {
      throw new Error(
        `${path.basename(cmd)} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${r.stderr}`,
      );
    }
    return r;
  }

  close(): void {
    this.child.stdin!.end();
  }
}

/**
 * A digest of a byte stream that skips its all-zero 64 KiB blocks (SHA-1 over the index and bytes of the others):
 * a 4 GiB image written by a few hundred MB of workload hashes in a fraction of the time of the whole.
 */
class SparseDigest {
  private static readonly BLOCK = 64 << 10;
  private static readonly ZERO = Buffer.alloc(SparseDigest.BLOCK);
  private readonly hash = createHash('sha1');
  private readonly pending = Buffer.alloc(SparseDigest.BLOCK);
  private fill = 0;
  private index = 0;

  update(data: Buffer): void {
    const { BLOCK } = SparseDigest;
    let off = 0;
    while (off < data.length) {
      if (this.fill === 0 && data.length - off >= BLOCK) {
        this.block(data.subarray(off, off + BLOCK));
        off += BLOCK;
        continue;
      }
      const n = Math.min(BLOCK - this.fill, data.length - off);
      data.copy(this.pending, this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === BLOCK) this.flushPending();
    }
  }

  digest(): string {
    if (this.fill > 0) this.flushPending();
    const end = Buffer.alloc(8);
    end.writeBigUInt64LE(BigInt(this.index));
    return this.hash.update(end).digest('hex');
  }

  private flushPending(): void {
    this.block(this.pending.subarray(0, this.fill));
    this.fill = 0;
  }

  private block(b: Buffer): void {
    if (!b.equals(SparseDigest.ZERO.subarray(0, b.length))) {
      const at = Buffer.alloc(12);
      at.writeBigUInt64LE(BigInt(this.index));
      at.writeUInt32LE(b.length, 8);
      this.hash.update(at).update(b);
    }
    this.index++;
  }
}

/** The digest of a whole process's stdout (run once per case to check it, never timed). */
function stdoutDigest(cmd: string, args: string[], unsyncableOutput = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const digest = new SparseDigest();
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => digest.update(d));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      if (acceptedExit(code, stderr, unsyncableOutput)) resolve(digest.digest());
      else reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited with ${code}: ${stderr}`));
    });
  });
}

// Images are read, never mapped (hashImage maps them): mapping a hole of a tmpfs file allocates it, and the
// images are 4 GiB files holding a few hundred MB.
async function fileDigest(file: string): Promise<string> {
  const digest = new SparseDigest();
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 << 20 }))
    digest.update(chunk as Buffer);
  return digest.digest();
}

function freshImage(image: string): void {
  fs.rmSync(image, { force: true });
  fs.writeFileSync(image, '');
  fs.truncateSync(image, DEVICE);
}

function writeZeros(image: string): void {
  const zeros = Buffer.alloc(4 << 20);
  const fd = fs.openSync(image, 'w');
  try {
    for (let off = 0; off < DEVICE; off += zeros.length) fs.writeSync(fd, zeros, 0, zeros.length, off);
  } finally {
    fs.closeSync(fd);
  }
}

/** The image a wdiff redoes to on a zeroed device (discards zeroed, as the redo rows do). */
async function wdiffImageDigest(wdiff: string, image: string): Promise<string> {
  freshImage(image);
  try {
    await native.wdiffRedo(wdiff, image, { discard: 'zero' });
    return await fileDigest(image);
  } finally {
    fs.rmSync(image, { force: true });
  }
}

/** One row: the same operation by walb-tool, by WalB's tool and by the addon, each into its own output. */
interface Operation {
  name: string;
  bytes: number; // what the operation reads: MB/s = bytes / time, the same for every side
  tool: (out: string) => string[];
  walb: (out: string) => [tool: string, args: string[]];
  addon: (out: string) => Promise<unknown>;
  /** Untimed, before each run: outputs are removed (replacing a file would add the freeing of the old one). */
  before: (out: string) => void;
  /** Untimed, once after the runs: each side's last output is what it must be. */
  check: (side: Side, out: string) => Promise<void>;
  /** WalB's tool writes to stdout, which cannot be synced (see UNSYNCABLE_OUTPUT). */
  unsyncableOutput?: boolean;
}

interface Row {
  data: string;
  amountMb: number;
  op: string;
  bytes: number;
  ms: Partial<Record<Side, number>>; // medians
  mbps: Partial<Record<Side, number>>;
  toolVsWalb?: number; // walb-tool speed / WalB speed
  addonVsWalb?: number;
  sysPct: Partial<Record<Side, number>>; // a side's system CPU time over its time, % (its threads' together)
  othersPct: number; // CPU other processes used meanwhile, in % of one core (they slow a 2-core machine)
}

/** One run of one side: its time, its system time, and the CPU of the process it started (0 in-process). */
async function runSide(
  runner: ProcessRunner,
  op: Operation,
  side: Side,
  out: string,
): Promise<{ ms: number; sysMs: number; childCpuMs: number }> {
  if (side === 'tool') {
    const r = await runner.run(WALB_TOOL, op.tool(out), false, process.env);
    return { ms: r.ms, sysMs: r.sysMs, childCpuMs: r.cpuMs };
  }
  if (side === 'walb') {
    const [tool, args] = op.walb(out);
    const r = await runner.run(path.join(ORACLE_BIN, tool), args, op.unsyncableOutput);
    return { ms: r.ms, sysMs: r.sysMs, childCpuMs: r.cpuMs };
  }
  const c0 = cpuNow();
  const t0 = process.hrtime.bigint();
  await op.addon(out);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, sysMs: cpuNow().sys - c0.sys, childCpuMs: 0 };
}

async function measure(
  runner: ProcessRunner,
  op: Operation,
  sides: Side[],
  outs: Record<Side, string>,
): Promise<{ ms: Partial<Record<Side, number>>; sysPct: Partial<Record<Side, number>>; othersPct: number }> {
  const times: Record<Side, number[]> = { tool: [], walb: [], addon: [] };
  const sys: Record<Side, number> = { tool: 0, walb: 0, addon: 0 };
  let others = 0;
  let total = 0;
  for (let round = 0; round < RUNS; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
      op.before(outs[side]);
      const c0 = cpuNow();
      const run = await runSide(runner, op, side, outs[side]);
      const c1 = cpuNow();
      times[side].push(run.ms);
      sys[side] += run.sysMs;
      total += run.ms;
      others += c1.busy - c0.busy - (c1.own - c0.own) - run.childCpuMs;
    }
  }
  const ms: Partial<Record<Side, number>> = {};
  const sysPct: Partial<Record<Side, number>> = {};
  for (const side of sides) {
    ms[side] = median(times[side]);
    sysPct[side] = (100 * sys[side]) / times[side].reduce((a, b) => a + b, 0);
  }
  return { ms, sysPct, othersPct: Math.max(0, (100 * others) / total) };
}

interface GenResult {
  endLsid: number;
}

/** `walb-tool wlog gen` of consecutive wlogs (lsids chained) of `amount` bytes each, not timed. */
function generate(paths: string[], amount: number, data: string, seed: number): void {
  let lsid = 0;
  paths.forEach((p, i) => {
    const r = spawnSync(
      WALB_TOOL,
      [
        ...['wlog', 'gen', '-o', p, '--size', String(DEVICE), '--amount', String(amount), '--max-io', '64K'],
        ...[
          '--discard-ratio',
          '0.01',
          '--data',
          data,
          '--seed',
          String(seed + i),
          '--lsid',
          String(lsid),
          '--json',
        ],
      ],
      { maxBuffer: 64 << 20 },
    );
    if (r.status !== 0) throw new Error(`walb-tool wlog gen exited with ${r.status}: ${r.stderr.toString()}`);
    lsid = (JSON.parse(r.stdout.toString()) as GenResult).endLsid;
  });
}

async function main(): Promise<void> {
  const oracle = fs.existsSync(path.join(ORACLE_BIN, 'wlog-gen'));
  const sides: Side[] = oracle ? ['tool', 'walb', 'addon'] : ['tool', 'addon'];
  if (!oracle) {
    console.error(
      `WalB's tools are not in ${ORACLE_BIN} (set WALB_ORACLE_BIN to their bin directory): ` +
        'measuring walb-tool and the in-process addon only, no ratios',
    );
  }
  const dir = benchDir();
  const runner = new ProcessRunner();
  const f = (name: string) => path.join(dir, name);
  const rows: Row[] = [];
  console.error(
    `bench dir ${dir} (${dir.startsWith('/dev/shm') ? 'tmpfs' : 'not tmpfs'}), workloads of ` +
      `${AMOUNTS_MB.join(' and ')} MiB over a ${DEVICE / 2 ** 30} GiB device, ${RUNS} runs each, medians`,
  );
  const size = (p: string) => fs.statSync(p).size;
  const removeFile = (p: string) => fs.rmSync(p, { force: true });
  const expectEqual = (what: string, side: Side, actual: string, expected: string) => {
    if (actual !== expected) throw new Error(`${what}: the output of ${side} differs from the reference`);
  };
  try {
    for (const amountMb of AMOUNTS_MB) {
      for (const data of ['random', 'compressible'] as const) {
        const amount = amountMb * MIB;
        const row = async (op: Operation) => {
          const outs = {
            tool: f(`${op.name}.tool`),
            walb: f(`${op.name}.walb`),
            addon: f(`${op.name}.addon`),
          };
          const { ms, sysPct, othersPct } = await measure(runner, op, sides, outs);
          for (const side of sides) {
            await op.check(side, outs[side]);
            removeFile(outs[side]);
          }
          const mbps: Partial<Record<Side, number>> = {};
          for (const side of sides) mbps[side] = op.bytes / MB / (ms[side]! / 1000);
          const vsWalb = (side: Side) => (ms.walb === undefined ? undefined : ms.walb / ms[side]!);
          rows.push({
            data,
            amountMb,
            op: op.name,
            bytes: op.bytes,
            ms,
            mbps,
            toolVsWalb: vsWalb('tool'),
            addonVsWalb: vsWalb('addon'),
            sysPct,
            othersPct,
          });
          console.error(`  ${data} ${amountMb} MiB ${op.name} done`);
        };
        const reference = f('reference.img');
        const redoReference = async (wlogs: string[]) => {
          freshImage(reference);
          for (const w of wlogs) await native.wlogRedo(w, reference, { discard: 'zero' });
        };
        const wdiffOutput = (expected: string, what: string) => async (side: Side, out: string) =>
          expectEqual(what, side, await wdiffImageDigest(out, f('check.img')), expected);
        const imageOutput = (expected: string, what: string) => async (side: Side, out: string) =>
          expectEqual(what, side, await fileDigest(out), expected);

        // One wlog of the whole amount: conversions and redos.
        const wlog = f('full.wlog');
        const wdiff = f('full.wdiff');
        generate([wlog], amount, data, 11);
        await redoReference([wlog]);
        const full = await fileDigest(reference);
        removeFile(reference);
        for (const indexed of [false, true]) {
          const name = `wlog-to-wdiff-${indexed ? 'indexed' : 'sorted'}`;
          await row({
            name,
            bytes: size(wlog),
            tool: (out) => ['wlog', 'to-wdiff', wlog, '-o', out, ...(indexed ? ['--indexed'] : [])],
            walb: (out) => ['wlog-to-wdiff', ['-i', wlog, '-o', out, ...(indexed ? ['-indexed'] : [])]],
            addon: (out) => native.wlogToWdiff([wlog], out, { indexed }),
            before: removeFile,
            check: wdiffOutput(full, name),
          });
        }
        await row({
          name: 'wlog-redo',
          bytes: size(wlog),
          tool: (out) => ['wlog', 'redo', wlog, out, '--discard', 'zero'],
          walb: (out) => ['wlog-redo', ['-i', wlog, '-z', out]],
          addon: (out) => native.wlogRedo(wlog, out, { discard: 'zero' }),
          before: freshImage,
          check: imageOutput(full, 'wlog-redo'),
        });
        await native.wlogToWdiff([wlog], wdiff, {});
        removeFile(wlog); // on tmpfs files hold memory
        await row({
          name: 'wdiff-redo',
          bytes: size(wdiff),
          tool: (out) => ['wdiff', 'redo', wdiff, out, '--discard', 'zero'],
          walb: (out) => ['wdiff-redo', ['-i', wdiff, '-z', out]],
          addon: (out) => native.wdiffRedo(wdiff, out, { discard: 'zero' }),
          before: freshImage,
          check: imageOutput(full, 'wdiff-redo'),
        });
        removeFile(wdiff);

        // The same amount as two and as eight consecutive wdiffs: merges, and a virtual full image of a base of
        // zeros with the two applied.
        for (const count of [2, 8]) {
          const wlogs = Array.from({ length: count }, (_, i) => f(`part${i}.wlog`));
          const wdiffs = Array.from({ length: count }, (_, i) => f(`part${i}.wdiff`));
          generate(wlogs, Math.floor(amount / count / 4096) * 4096, data, 100 * count);
          for (let i = 0; i < count; i++) await native.wlogToWdiff([wlogs[i]], wdiffs[i], {});
          await redoReference(wlogs);
          wlogs.forEach(removeFile);
          const merged = await fileDigest(reference);
          removeFile(reference);
          const name = `wdiff-merge-${count}`;
          await row({
            name,
            bytes: wdiffs.reduce((n, w) => n + size(w), 0),
            tool: (out) => ['wdiff', 'merge', ...wdiffs, '-o', out],
            walb: (out) => ['wdiff-merge', ['-i', ...wdiffs, '-o', out]],
            addon: (out) => native.wdiffMerge(wdiffs, out, {}),
            before: removeFile,
            check: wdiffOutput(merged, name),
          });
          if (count === 2) {
            // A written base, as a full backup is: a sparse one would be filled in by the addon's mapping of it.
            const base = f('base.img');
            writeZeros(base);
            const toolArgs = ['virt-full-cat', base, ...wdiffs, '-o', '-'];
            const walbArgs = ['-i', base, '-d', ...wdiffs, '-o', '-'];
            await row({
              name: 'virtual-full-read',
              bytes: DEVICE,
              tool: () => toolArgs,
              walb: () => ['virt-full-cat', walbArgs],
              addon: () => readVirtualFull(base, wdiffs),
              before: () => undefined,
              check: async (side) => {
                let digest: string;
                if (side === 'tool') {
                  digest = await stdoutDigest(WALB_TOOL, toolArgs);
                } else if (side === 'walb') {
                  digest = await stdoutDigest(path.join(ORACLE_BIN, 'virt-full-cat'), walbArgs, true);
                } else {
                  const d = new SparseDigest();
                  await readVirtualFull(base, wdiffs, (chunk) => d.update(chunk));
                  digest = d.digest();
                }
                expectEqual('virtual-full-read', side, digest, merged);
              },
              unsyncableOutput: true,
            });
            removeFile(base);
          }
          wdiffs.forEach(removeFile);
        }
      }
    }
  } finally {
    runner.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  rows.sort(tableOrder);
  printTable(rows, oracle);
  const busy = rows.filter((r) => r.othersPct >= 15);
  if (busy.length > 0) {
    console.error(
      `note: other processes used ${busy.map((r) => `${r.othersPct.toFixed(0)}%`).join(', ')} of a CPU during ` +
        `${busy.length} row(s) (column "others %"); on a 2-core machine that lowers their figures, rerun when idle`,
    );
  }
  console.log(
    JSON.stringify({
      bench: 'formats',
      runs: RUNS,
      amountsMb: AMOUNTS_MB,
      deviceBytes: DEVICE,
      walb: oracle ? 'walb-tools 1.0.19' : null,
      rows,
    }),
  );
}

/** The addon's virtual full image read whole in 4 MiB reads, as the servers serve it. */
async function readVirtualFull(base: string, wdiffs: string[], onData?: (b: Buffer) => void): Promise<void> {
  const vf = new native.VirtualFull(base, wdiffs);
  try {
    for (let off = 0; off < DEVICE; off += 4 << 20) {
      const b = await vf.read({ offset: off, length: Math.min(4 << 20, DEVICE - off) });
      onData?.(b);
    }
  } finally {
    vf.close();
  }
}

function tableOrder(a: Row, b: Row): number {
  const key = (r: Row) => [
    AMOUNTS_MB.indexOf(r.amountMb),
    r.data === 'random' ? 0 : 1,
    OPERATIONS.indexOf(r.op),
  ];
  const [x, y] = [key(a), key(b)];
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
}

function printTable(rows: Row[], oracle: boolean): void {
  const fmt = (x: number | undefined, d = 0) => (x === undefined ? '-' : x.toFixed(d));
  const head = [
    'data',
    'MiB',
    'operation',
    'in MB',
    'walb-tool',
    'WalB',
    'x WalB',
    'in-process',
    'x WalB',
    'sys % tool',
    'sys % WalB',
    'others %',
  ];
  const widths = [12, 5, 22, 8, 10, 10, 8, 10, 8, 10, 10, 9];
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 || i === 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' ');
  console.log(
    `MB/s of each side (medians); x WalB = its speed / WalB's speed${oracle ? '' : ' (WalB not run)'}`,
  );
  console.log(line(head));
  for (const r of rows) {
    console.log(
      line([
        r.data,
        String(r.amountMb),
        r.op,
        fmt(r.bytes / MB),
        fmt(r.mbps.tool),
        fmt(r.mbps.walb),
        fmt(r.toolVsWalb, 2),
        fmt(r.mbps.addon),
        fmt(r.addonVsWalb, 2),
        fmt(r.sysPct.tool),
        fmt(r.sysPct.walb),
        fmt(r.othersPct),
      ]),
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
