// npm run bench:hash — hash backup (docs/servers.md §7.6) on one machine (loopback, files in /dev/shm or
// WALB_BENCH_DIR): a 4 GiB wdev of random data is fully backed up; then, as after an overflow (storage Stopped, the
// log reset by walbc's hash-backup path), 1% and then 10% of its 64 KiB blocks are rewritten at scattered places
// (in the data device file: a Stopped storage ships nothing of them, and the hash backup resets the log anyway),
// and each time a hash backup runs side by side with a new full backup of the same device and with
// `rsync --inplace --no-whole-file` bringing a copy of the old image up to the new one on the same file system.
// The three alternate, WALB_BENCH_ROUNDS rounds (default 3), medians. Prints a table and, last, one JSON line.
//
// Why 64 KiB blocks: it is the block rsync picks for a 4 GiB file (√size), so rsync sends exactly the bytes that
// changed, and a write burst of a file system or a database is of that order; the hash backup sends them rounded
// up to its chunk (64 KiB, WALB_BENCH_CHUNK_KIB), which the table shows as "changed (chunks)".
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Processes } from '../src/demo/processes';
import { benchDir, startBenchGroup } from './bench-group';
import { median } from './measure';

const DEVICE = Number(process.env.WALB_BENCH_DEVICE_MB ?? 4096) * 1048576; // no << 20: 2 GiB overflows int32
const ROUNDS = Number(process.env.WALB_BENCH_ROUNDS ?? 3);
/** The unit of change (see the head comment). */
const BLOCK = 64 << 10;
/** The hash backup's chunk (HashBackup's chunk_size), also for the rounding of the changed bytes. */
const CHUNK = Number(process.env.WALB_BENCH_CHUNK_KIB ?? 64) << 10;
const CASES = [0.01, 0.1];
/** Hash backup always before the full backup of a round (the full one makes the archive equal to the device). */
const ORDERS = [
  ['hash', 'full', 'rsync'],
  ['rsync', 'hash', 'full'],
  ['hash', 'rsync', 'full'],
] as const;
type Method = (typeof ORDERS)[number][number];

const procs = new Processes();

interface Run {
  seconds: number;
  sentBytes: number;
}

/** Rewrites `fraction` of the device's BLOCKs, distinct and scattered, with random bytes; the touched chunks. */
function change(ddev: string, fraction: number): { bytes: number; chunkBytes: number } {
  const blocks = DEVICE / BLOCK;
  const picked = new Set<number>();
  const want = Math.round(blocks * fraction);
  while (picked.size < want) picked.add(crypto.randomInt(blocks));
  const fd = fs.openSync(ddev, 'r+');
  try {
    for (const b of picked) fs.writeSync(fd, crypto.randomBytes(BLOCK), 0, BLOCK, b * BLOCK);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const chunks = new Set([...picked].map((b) => Math.floor((b * BLOCK) / CHUNK)));
  return { bytes: want * BLOCK, chunkBytes: chunks.size * CHUNK };
}

/** The bytes the storage's last hash backup sent, from its log. */
function hashSentBytes(storageLog: string): number {
  const lines = fs
    .readFileSync(storageLog, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"event":"hash-backup-done"'));
  if (!lines.length) throw new Error('no hash-backup-done in the storage log');
  return (JSON.parse(lines[lines.length - 1]) as { sentBytes: number }).sentBytes;
}

/** rsync's delta transfer of `from` onto `to`; fails unless its stats show matched (not resent) data. */
function rsync(from: string, to: string): Run {
  const t0 = process.hrtime.bigint();
  const out = execFileSync('rsync', ['--inplace', '--no-whole-file', '--ignore-times', '--stats', from, to], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const stat = (name: string) => {
    const m = new RegExp(`^${name}: ([\\d,]+)`, 'm').exec(out);
    if (!m) throw new Error(`rsync printed no "${name}"`);
    return Number(m[1].replace(/,/g, ''));
  };
  const matched = stat('Matched data');
  if (matched < DEVICE / 2)
    throw new Error(`rsync did not run its delta algorithm: matched ${matched} bytes`);
  return { seconds, sentBytes: stat('Total bytes sent') };
}

async function main(): Promise<void> {
  const base = benchDir();
  const work = fs.mkdtempSync(path.join(base, 'walb-bench-hash-'));
  try {
    const group = await startBenchGroup(procs, work, DEVICE, (from, to) => execFileSync('cp', [from, to]));
    const { ctl, wdevd, ddev, peakMib } = group;
    const storageLog = group.log('storage');
    const old = path.join(work, 'old.img');
    await ctl.fullBackup('bench', { wait: true });

    const timed = async (start: () => Promise<{ operation: { id: string } }>) => {
      const t0 = process.hrtime.bigint();
      const { operation } = await start();
      const done = await ctl.watchOperation('s0', operation.id);
      if (done.state !== 'done') throw new Error(`${done.kind} ${done.state}: ${done.error}`);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    const methods: Record<Method, () => Promise<Run>> = {
      // walbc's path: the Stopped storage is reset, then HashBackup.
      hash: async () => {
        const seconds = await timed(() => ctl.hashBackup('bench', { wait: false, chunkSize: CHUNK }));
        return { seconds, sentBytes: hashSentBytes(storageLog) };
      },
      // A new full backup of the same device: both ends reset first (not timed), as an operator would.
      full: async () => {
        await ctl.stop('bench', 's0', { wait: true });
        await ctl.resetVolume('bench', 's0');
        await ctl.stop('bench', 'a0', { wait: true });
        await ctl.resetVolume('bench', 'a0');
        const seconds = await timed(() => ctl.fullBackup('bench', { wait: false }));
        return { seconds, sentBytes: DEVICE };
      },
      rsync: async () => Promise.resolve(rsync(ddev, old)),
    };

    const results = [];
    for (const fraction of CASES) {
      const runs: Record<Method, Run[]> = { hash: [], full: [], rsync: [] };
      let changed = { bytes: 0, chunkBytes: 0 };
      for (let round = 0; round < ROUNDS; round++) {
        // The archive holds the device as it is (the last full backup): keep a copy for rsync, then the overflow.
        await ctl.stop('bench', 's0', { wait: true });
        execFileSync('cp', [ddev, old]);
        changed = change(ddev, fraction);
        for (const m of ORDERS[round % ORDERS.length]) runs[m].push(await methods[m]());
        fs.rmSync(old);
      }
      const med = (m: Method) => ({
        seconds: median(runs[m].map((r) => r.seconds)),
        sentBytes: median(runs[m].map((r) => r.sentBytes)),
        runs: runs[m].map((r) => r.seconds),
      });
      results.push({ fraction, changed, hash: med('hash'), full: med('full'), rsync: med('rsync') });
    }
    const peak = { storage: peakMib('storage'), archive: peakMib('archive') };
    ctl.close();
    wdevd.close();

    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    console.log(
      `hash backup on ${base} (loopback), ${DEVICE / 1048576} MiB wdev of random data, ${BLOCK >> 10} KiB blocks (rsync's block for this size) changed at random places in the data device, chunk ${CHUNK >> 10} KiB; medians of ${ROUNDS} alternating rounds\n`,
    );
    console.log(
      'changed  bytes changed (chunks) MB | method  time s  sent MB  scan MB/s | hash vs full  hash vs rsync',
    );
    for (const r of results) {
      const head = `${(r.fraction * 100).toFixed(0).padStart(5)}%  ${mb(r.changed.bytes).padStart(8)} (${mb(r.changed.chunkBytes)})`;
      for (const m of ['hash', 'full', 'rsync'] as const) {
        const x = r[m];
        const ratios =
          m === 'hash'
            ? `   ${(r.full.seconds / x.seconds).toFixed(2).padStart(6)}×   ${(r.rsync.seconds / x.seconds).toFixed(2).padStart(8)}×`
            : '';
        console.log(
          `${(m === 'hash' ? head : '').padEnd(34)} | ${m.padEnd(6)} ${x.seconds.toFixed(2).padStart(6)} ${mb(x.sentBytes).padStart(8)} ${(DEVICE / 1e6 / x.seconds).toFixed(0).padStart(10)} |${ratios}   runs ${x.runs.map((t) => t.toFixed(2)).join('/')}`,
        );
      }
    }
    console.log(`\npeak memory  storage ${peak.storage} MiB, archive ${peak.archive} MiB (VmHWM at the end)`);
    console.log(
      JSON.stringify({
        bench: 'hash',
        dir: base,
        deviceMb: DEVICE / 1048576,
        blockKib: BLOCK >> 10,
        chunkKib: CHUNK >> 10,
        rounds: ROUNDS,
        results,
        peakMib: peak,
      }),
    );
  } finally {
    await procs.stopAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:hash: ${(err as Error).message}\n`);
  process.exit(1);
});
