// npm run bench:group — the backup group on one machine (loopback, files in /dev/shm or WALB_BENCH_DIR):
// 1. full backup of a 1 GiB wdev (random data) to the archive, side by side with nbdcopy copying the same data
//    between the same file systems (alternating, medians of WALB_BENCH_ROUNDS=3);
// 2. under a steady 50 MB/s write load on the wdev, the time from `snapshot` to restorable on the archive
//    (median and worst of 20);
// 3. the servers' byte paths per second of CPU (their /proc/PID/stat before and after), alternating, medians of
//    WALB_BENCH_ROUNDS: the proxy taking WALB_BENCH_PATH_MB=256 of wlogs written at once (receiving them, converting
//    them to wdiffs and sending those on), then the archive applying the resulting wdiffs into its base image.
// Prints a table and, last, one JSON line.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Processes } from '../src/demo/processes';
import { benchDir, loadWriter, startBenchGroup, writeBurst } from './bench-group';

const DEVICE = Number(process.env.WALB_BENCH_DEVICE_MB ?? 1024) * 1048576; // no << 20: 2 GiB overflows int32
const SNAPSHOTS = Number(process.env.WALB_BENCH_SNAPSHOTS ?? 20);
const LOAD_MBPS = 50;
const ROUNDS = Number(process.env.WALB_BENCH_ROUNDS ?? 3);
const PATH_BYTES = Number(process.env.WALB_BENCH_PATH_MB ?? 256) * 1048576;
// Part 3 measures CPU time, not the clock: a busy machine only makes it wait longer.
const PATH_WAIT_MS = 600_000;

const procs = new Processes();

async function main(): Promise<void> {
  const base = benchDir();
  const work = fs.mkdtempSync(path.join(base, 'walb-bench-group-'));
  try {
    const {
      ctl,
      wdevd,
      ddev,
      runDir: run,
      peakMib,
      cpuSeconds,
    } = await startBenchGroup(procs, work, DEVICE, (from, to) => execFileSync('nbdcopy', [from, to]));

    // 1. full backup vs nbdcopy of the same bytes between the same file systems, alternating, ROUNDS times; between
    // rounds both ends go back to SyncReady (reset-vol) as an operator would for a new full backup.
    const fullRuns: number[] = [];
    const copyRuns: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0) {
        await ctl.stop('bench', 's0', { wait: true });
        await ctl.resetVolume('bench', 's0');
        await ctl.stop('bench', 'a0', { wait: true });
        await ctl.resetVolume('bench', 'a0');
      }
      const t0 = Date.now();
      const r = await ctl.fullBackup('bench', { wait: false });
      await ctl.waitOperation('s0', r.operation);
      fullRuns.push(DEVICE / 1e6 / ((Date.now() - t0) / 1000));
      const copy = path.join(work, 'copy.img');
      const t1 = Date.now();
      execFileSync('nbdcopy', [ddev, copy], { stdio: 'ignore' });
      copyRuns.push(DEVICE / 1e6 / ((Date.now() - t1) / 1000));
      fs.rmSync(copy);
    }
    // Peak resident memory so far (VmHWM): bounded by buffers in flight, not by the device size.
    const peak = { storage: peakMib('storage'), archive: peakMib('archive') };
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const fullMbps = median(fullRuns);
    const copyMbps = median(copyRuns);

    // 2. snapshot -> restorable under a steady write load
    const writer = loadWriter(path.join(run, 'nbd.sock'), 'bench', DEVICE, LOAD_MBPS);
    const before = (await wdevd.status('bench')).lsids!.latest;
    const loadStart = Date.now();
    await new Promise((res) => setTimeout(res, 2000));
    const lat: number[] = [];
    for (let i = 0; i < SNAPSHOTS; i++) {
      const ts = Date.now();
      const gid = await ctl.snapshot('bench');
      await ctl.waitRestorable('bench', gid, 'a0', 120_000);
      lat.push(Date.now() - ts);
      await new Promise((res) => setTimeout(res, 500));
    }
    const loadMbps =
      (((await wdevd.status('bench')).lsids!.latest - before) * 4096) /
      1e6 /
      ((Date.now() - loadStart) / 1000);
    writer.kill('SIGTERM');
    lat.sort((x, y) => x - y);
    const snapMedian = median(lat);
    const worst = lat[lat.length - 1];

    // 3. MB per CPU-second of the proxy's wlog -> wdiff path and of the archive's apply, alternating. What the load
    // left in the log is shipped first, so that each proxy round takes only its own writes.
    await ctl.waitRestorable('bench', await ctl.snapshot('bench'), 'a0', PATH_WAIT_MS);
    const diffBytes = async () => Number((await ctl.get('a0', 'total-diff-size', ['bench']))[0]);
    const proxyRuns: number[] = [];
    const applyRuns: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const lsid0 = (await wdevd.status('bench')).lsids!.latest;
      const proxyCpu0 = cpuSeconds('proxy');
      writeBurst(path.join(run, 'nbd.sock'), 'bench', PATH_BYTES);
      const gid = await ctl.snapshot('bench');
      await ctl.waitRestorable('bench', gid, 'a0', PATH_WAIT_MS);
      const wlogBytes = ((await wdevd.status('bench')).lsids!.latest - lsid0) * 4096;
      proxyRuns.push(wlogBytes / 1e6 / (cpuSeconds('proxy') - proxyCpu0));
      const diffs0 = await diffBytes();
      const archiveCpu0 = cpuSeconds('archive');
      await ctl.apply('bench', gid, { wait: true });
      applyRuns.push((diffs0 - (await diffBytes())) / 1e6 / (cpuSeconds('archive') - archiveCpu0));
    }
    const proxyMbPerCpuSec = median(proxyRuns);
    const applyMbPerCpuSec = median(applyRuns);
    ctl.close();
    wdevd.close();

    console.log(`backup group on ${base} (loopback), ${DEVICE / 1048576} MiB wdev, random data\n`);
    console.log(
      `full backup           ${fullMbps.toFixed(0).padStart(6)} MB/s   nbdcopy (same data, same fs) ${copyMbps.toFixed(0)} MB/s   ratio ${(fullMbps / copyMbps).toFixed(2)}   (medians of ${ROUNDS}: ${fullRuns.map((x) => x.toFixed(0)).join('/')} vs ${copyRuns.map((x) => x.toFixed(0)).join('/')})`,
    );
    console.log(
      `peak memory           storage ${peak.storage} MiB, archive ${peak.archive} MiB (VmHWM after the full backups)`,
    );
    console.log(
      `snapshot->restorable  median ${snapMedian} ms, worst ${worst} ms of ${SNAPSHOTS}, under ${loadMbps.toFixed(0)} MB/s of writes`,
    );
    const runs = (xs: number[]) => xs.map((x) => x.toFixed(0)).join('/');
    console.log(
      `proxy wlog -> wdiff   ${proxyMbPerCpuSec.toFixed(0).padStart(6)} MB per CPU-second of walb-proxy   (${PATH_BYTES / 1048576} MiB of wlogs a round; medians of ${ROUNDS}: ${runs(proxyRuns)})`,
    );
    console.log(
      `archive apply         ${applyMbPerCpuSec.toFixed(0).padStart(6)} MB per CPU-second of walb-archive (wdiff bytes applied; medians of ${ROUNDS}: ${runs(applyRuns)})`,
    );
    console.log(
      JSON.stringify({
        bench: 'group',
        dir: base,
        deviceMb: DEVICE / 1048576,
        fullMbps,
        copyMbps,
        fullRuns,
        copyRuns,
        peakMib: peak,
        snapshotMs: { median: snapMedian, worst, n: SNAPSHOTS },
        loadMbps,
        pathMb: PATH_BYTES / 1048576,
        proxyMbPerCpuSec,
        applyMbPerCpuSec,
        proxyRuns,
        applyRuns,
      }),
    );
  } finally {
    await procs.stopAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:group: ${(err as Error).message}\n`);
  process.exit(1);
});
