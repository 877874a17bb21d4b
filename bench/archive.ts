// npm run bench:archive — the archive over time (docs/servers.md §6.6, §6.10), one group on loopback, files in
// /dev/shm or WALB_BENCH_DIR, a 1 GiB wdev of random data (WALB_BENCH_DEVICE_MB) fully backed up, then 100 snapshots
// of WALB_BENCH_DIFF_MB (4) MiB of random 16 KiB writes each (fio's nbd engine), one wdiff each:
// 1. restore of the snapshot behind 1, 10 and 100 wdiffs, then behind the 100 merged into one, then after apply (the
//    base alone), each side by side with `cp --reflink=auto` of the base image (same size, same file system);
// 2. random 4 KiB reads (fio's nbd engine, WALB_BENCH_IODEPTH=16, WALB_BENCH_IOPS_SECONDS=10) of the snapshot behind
//    10 wdiffs exported by the archive, side by side with `nbdkit file` serving its restored image.
// Each pair alternates for WALB_BENCH_ROUNDS (3) rounds; medians. A restore is timed by its operation's own start
// and end (the archive's clock, without walbc's polling). Prints a table and, last, one JSON line.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Processes } from '../src/demo/processes';
import { benchDir, startBenchGroup, writeRandom } from './bench-group';
import { alternate, median, seconds } from './measure';

const MiB = 1048576;
const DEVICE = Number(process.env.WALB_BENCH_DEVICE_MB ?? 1024) * MiB;
const DIFF_BYTES = Number(process.env.WALB_BENCH_DIFF_MB ?? 4) * MiB;
const ROUNDS = Number(process.env.WALB_BENCH_ROUNDS ?? 3);
const IODEPTH = Number(process.env.WALB_BENCH_IODEPTH ?? 16);
const IOPS_SECONDS = Number(process.env.WALB_BENCH_IOPS_SECONDS ?? 10);
const DIFFS = 100;
const VOLUME = 'bench';

const procs = new Processes();

/** Random 4 KiB reads of an NBD export for IOPS_SECONDS: fio's read IOPS. */
function randomReadIops(uri: string): number {
  const out = execFileSync(
    'fio',
    [
      '--name=randread',
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randread',
      '--bs=4k',
      `--iodepth=${IODEPTH}`,
      `--size=${DEVICE}`,
      '--time_based',
      `--runtime=${IOPS_SECONDS}`,
      '--output-format=json',
    ],
    { encoding: 'utf8' },
  );
  // The nbd engine says "fio: connected to NBD server" on stdout before the JSON.
  return (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: { iops: number } }[] }).jobs[0].read
    .iops;
}

/** nbdkit's file plugin serving `image` read-only on a unix socket; resolves once it answers. */
async function nbdkitFile(image: string, socket: string): Promise<{ uri: string; stop(): void }> {
  const pidFile = `${socket}.pid`;
  const p = spawn('nbdkit', ['--foreground', '--readonly', '-U', socket, '-P', pidFile, 'file', image], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100 && !(fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim()); i++)
    await new Promise((r) => setTimeout(r, 100));
  return { uri: `nbd+unix:///?socket=${socket}`, stop: () => p.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const base = benchDir();
  const work = fs.mkdtempSync(path.join(base, 'walb-bench-archive-'));
  try {
    const cp = (from: string, to: string) => execFileSync('cp', ['--reflink=auto', from, to]);
    const group = await startBenchGroup(procs, work, DEVICE, cp);
    const { ctl, wdevd, runDir } = group;
    const nbd = path.join(runDir, 'nbd.sock');
    const archiveData = path.join(work, 'archive');
    const baseImage = path.join(archiveData, VOLUME, 'base.img');
    const full = await ctl.fullBackup(VOLUME, { wait: true });
    const fullGid = Number(full.gid);
    const gids: number[] = [];
    for (let i = 0; i < DIFFS; i++) {
      writeRandom(nbd, VOLUME, DEVICE, DIFF_BYTES, 16 * 1024);
      gids.push(await ctl.snapshot(VOLUME, { wait: true }));
    }
    const diffFiles = () =>
      fs.readdirSync(path.join(archiveData, VOLUME)).filter((n) => n.endsWith('.wdiff'));
    const diffBytes = diffFiles().reduce(
      (a, n) => a + fs.statSync(path.join(archiveData, VOLUME, n)).size,
      0,
    );

    /** Restores `gid`, returns its operation's own duration [s] and deletes the image again. */
    const restore = async (gid: number) => {
      const op = await ctl.restore(VOLUME, gid, { wait: true });
      await ctl.delRestored(VOLUME, gid);
      return (Number(op.endedMs) - Number(op.startedMs)) / 1000;
    };
    const copy = path.join(work, 'copy.img');
    const copyOnce = () => {
      const s = seconds(() => cp(baseImage, copy));
      fs.rmSync(copy);
      return s;
    };
    const restoreRows: { what: string; diffs: number; runs: number[]; cp: number[] }[] = [];
    const timeRestore = async (what: string, gid: number, diffs: number) => {
      const row = { what, diffs, runs: [] as number[], cp: [] as number[] };
      for (let round = 0; round < ROUNDS; round++)
        await alternate(
          round,
          async () => row.runs.push(await restore(gid)),
          async () => row.cp.push(copyOnce()),
        );
      restoreRows.push(row);
    };

    // 1a. restores behind 1, 10 and 100 wdiffs.
    for (const n of [1, 10, DIFFS]) await timeRestore(`behind ${n} wdiff(s)`, gids[n - 1], n);

    // 2. random reads: the snapshot behind 10 wdiffs exported, beside nbdkit serving its restored image.
    const gid10 = gids[9];
    const restored = String((await ctl.restore(VOLUME, gid10, { wait: true })).result);
    const exported = await ctl.exportSnapshot(VOLUME, gid10);
    const nbdkit = await nbdkitFile(restored, path.join(work, 'nbdkit.sock'));
    const ours: number[] = [];
    const theirs: number[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++)
        await alternate(
          round,
          async () => ours.push(randomReadIops(exported.uris[0])),
          async () => theirs.push(randomReadIops(nbdkit.uri)),
        );
    } finally {
      nbdkit.stop();
      await ctl.unexportSnapshot(VOLUME, gid10);
    }
    await ctl.delRestored(VOLUME, gid10);

    // 1b. the 100 wdiffs merged into one (the snapshots between them made implicit first), then applied.
    await ctl.setSnapshotExplicit(VOLUME, gids.slice(0, -1), false);
    const merge = await ctl.merge(VOLUME, { gidBegin: fullGid, gidEnd: gids[DIFFS - 1] }, { wait: true });
    const mergeSeconds = (Number(merge.endedMs) - Number(merge.startedMs)) / 1000;
    await timeRestore(`behind ${DIFFS} merged into 1`, gids[DIFFS - 1], 1);
    const apply = await ctl.apply(VOLUME, gids[DIFFS - 1], { wait: true });
    const applySeconds = (Number(apply.endedMs) - Number(apply.startedMs)) / 1000;
    await timeRestore('after apply (base only)', gids[DIFFS - 1], 0);
    ctl.close();
    wdevd.close();

    const mbps = (s: number) => DEVICE / 1e6 / s;
    const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join('/');
    console.log(
      `archive on ${base} (loopback), ${DEVICE / MiB} MiB volume of random data, ${DIFFS} wdiffs of ${DIFF_BYTES / MiB} MiB ` +
        `written (${(diffBytes / 1e6).toFixed(0)} MB of wdiffs); medians of ${ROUNDS} alternating rounds\n`,
    );
    for (const r of restoreRows) {
      const ratio = median(r.runs) / median(r.cp);
      console.log(
        `restore ${r.what.padEnd(28)} ${mbps(median(r.runs)).toFixed(0).padStart(6)} MB/s   cp --reflink=auto ${mbps(median(r.cp)).toFixed(0).padStart(6)} MB/s   time ratio ${ratio.toFixed(2)}   (s: ${runs(r.runs)} vs ${runs(r.cp)})`,
      );
    }
    console.log(
      `merge of ${DIFFS} wdiffs ${mergeSeconds.toFixed(2)} s, apply of the merged wdiff ${applySeconds.toFixed(2)} s`,
    );
    const iopsRatio = median(ours) / median(theirs);
    console.log(
      `random 4 KiB reads, iodepth ${IODEPTH}: export behind 10 wdiffs ${median(ours).toFixed(0)} IOPS   nbdkit file (restored image) ${median(theirs).toFixed(0)} IOPS   ratio ${iopsRatio.toFixed(2)}   (${runs(ours.map((x) => x / 1000))} vs ${runs(theirs.map((x) => x / 1000))} kIOPS)`,
    );
    const merged = restoreRows.find((r) => r.what.includes('merged'))!;
    const mergedRatio = median(merged.runs) / median(merged.cp);
    console.log(
      `bars: export reads >= 0.5x nbdkit: ${iopsRatio >= 0.5 ? 'met' : 'NOT met'}; restore behind ${DIFFS} merged within 1.5x of cp: ${mergedRatio <= 1.5 ? 'met' : 'NOT met'}`,
    );
    console.log(
      JSON.stringify({
        bench: 'archive',
        dir: base,
        deviceMb: DEVICE / MiB,
        diffMb: DIFF_BYTES / MiB,
        diffs: DIFFS,
        diffBytes,
        rounds: ROUNDS,
        restore: restoreRows.map((r) => ({ what: r.what, diffs: r.diffs, runs: r.runs, cpRuns: r.cp })),
        mergeSeconds,
        applySeconds,
        randomRead: { iodepth: IODEPTH, exportIops: ours, nbdkitIops: theirs, ratio: iopsRatio },
      }),
    );
  } finally {
    await procs.stopAll();
    // WALB_BENCH_KEEP=1 keeps the servers' data and logs for a look afterwards.
    if (process.env.WALB_BENCH_KEEP === '1') process.stderr.write(`kept ${work}\n`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:archive: ${(err as Error).message}\n`);
  process.exit(1);
});
