// npm run bench:repl — replication between two archives on one machine (loopback, files in /dev/shm or
// WALB_BENCH_DIR), docs/servers.md §7.7:
// 1. full replication of a 1 GiB volume (random data) from a0 to a1, side by side with nbdcopy copying the same
//    base image the way a user would between hosts (`nbdkit file` serving it read-only on a loopback TCP port,
//    `nbdcopy nbd://...` writing the copy: a network hop, like ours), and nbdcopy copying it file to file (the floor:
//    no network); the three in turn, medians of WALB_BENCH_ROUNDS=3, with the CPU of both ends per GB; between
//    rounds a1 is reset as an operator would before replicating again from scratch;
// 2. diff replication of 100 MiB of wdiffs (random writes through NBD, one snapshot), side by side with rsync
//    copying the same wdiff files to another directory (alternating, medians);
// 3. with a1 synchronizing, under a steady 50 MB/s write load on the wdev, the time from `snapshot` on the storage
//    to restorable on both archives (median and worst of 20).
// Prints a table and, last, one JSON line.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller } from '../src/controller/controller';
import { Processes, freePort } from '../src/demo/processes';
import type { WdevClient } from '../src/wdev/client';
import { benchDir, loadWriter, startBenchGroup, writeRandom } from './bench-group';
import {
  alternate,
  endedChildrenCpuSeconds,
  inTurn,
  median,
  processCpuSeconds,
  seconds,
  secondsAsync,
} from './measure';

const MiB = 1048576;
const DEVICE = Number(process.env.WALB_BENCH_DEVICE_MB ?? 1024) * MiB;
const DIFF_BYTES = Number(process.env.WALB_BENCH_DIFF_MB ?? 100) * MiB;
const SNAPSHOTS = Number(process.env.WALB_BENCH_SNAPSHOTS ?? 20);
const ROUNDS = Number(process.env.WALB_BENCH_ROUNDS ?? 3);
const LOAD_MBPS = 50;
const VOLUME = 'bench';

const procs = new Processes();

/** The wdiff files of an archive volume's directory. */
function wdiffs(archiveData: string): string[] {
  const dir = path.join(archiveData, VOLUME);
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.wdiff'))
    .map((n) => path.join(dir, n));
}

/**
 * `nbdkit file` serving `image` read-only on a loopback TCP port, as the source host of an nbdcopy between hosts
 * would; otherwise nbdkit's defaults (16 threads, the file plugin's page-cache reads).
 */
async function serveImage(work: string, image: string): Promise<{ uri: string; proc: ChildProcess }> {
  const port = await freePort();
  const pidFile = path.join(work, 'nbdkit.pid');
  const proc = spawn(
    'nbdkit',
    [
      '--foreground',
      '--exit-with-parent',
      '--readonly',
      '-i',
      '127.0.0.1',
      '-p',
      String(port),
      '-P',
      pidFile,
      'file',
      image,
    ],
    { stdio: 'ignore' },
  );
  procs.all.push(proc);
  // nbdkit writes its pid file once it listens.
  const deadline = Date.now() + 10000;
  while (!fs.existsSync(pidFile)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error('nbdkit did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  return { uri: `nbd://127.0.0.1:${port}`, proc };
}

class LogOverflow extends Error {}

/**
 * Rejects once the wdev's log overflows, until `signal`: the storage then stops shipping, so no snapshot would become
 * restorable and a wait for one could only time out. It overflows when writes outrun shipping longer than it holds.
 */
async function logOverflow(wdevd: WdevClient, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await new Promise((res) => setTimeout(res, 500));
    const overflow = (await wdevd.status(VOLUME)).overflow;
    if (overflow && !signal.aborted)
      throw new LogOverflow(
        `the wdev's log overflowed: shipping fell behind the ${LOAD_MBPS} MB/s of writes (load average ${os.loadavg()[0].toFixed(1)})`,
      );
  }
}

async function main(): Promise<void> {
  const base = benchDir();
  const work = fs.mkdtempSync(path.join(base, 'walb-bench-repl-'));
  try {
    const group = await startBenchGroup(procs, work, DEVICE, (from, to) =>
      execFileSync('nbdcopy', [from, to]),
    );
    const { ctl: primaryOnly, wdevd, runDir, peakMib } = group;
    primaryOnly.close();
    const a1 = `127.0.0.1:${await freePort()}`;
    const a1Proc = await procs.server(
      'walb-archive',
      ['--listen', a1, '--data-dir', path.join(work, 'a1')],
      path.join(work, 'a1.log'),
    );
    const ctl = new Controller({
      storages: [{ id: 's0', address: group.storage }],
      proxies: [{ id: 'p0', address: group.proxy }],
      archives: [
        { id: 'a0', address: group.archive },
        { id: 'a1', address: a1 },
      ],
    });
    const nbd = path.join(runDir, 'nbd.sock');
    await ctl.fullBackup(VOLUME, { wait: true });
    const a0Data = path.join(work, 'archive');
    const a0Base = path.join(a0Data, VOLUME, 'base.img');

    // 1. full replication vs nbdcopy over NBD and nbdcopy file to file, in turn; CPU seconds of both ends.
    // nbdcopy runs with its defaults (4 connections where the server allows them, 64 requests in flight).
    const served = await serveImage(work, a0Base);
    const a1Pid = a1Proc.pid!;
    const a0Pid = group.archiveProc.pid!;
    const full: number[] = [];
    const fullCpu: number[] = [];
    const copyNbd: number[] = [];
    const copyNbdCpu: number[] = [];
    const copy: number[] = [];
    const copyCpu: number[] = [];
    const copyTo = path.join(work, 'copy.img');
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0) {
        await ctl.stop(VOLUME, 'a1', { wait: true });
        await ctl.resetVolume(VOLUME, 'a1');
      }
      const run = async () => {
        const cpu0 = processCpuSeconds(a0Pid) + processCpuSeconds(a1Pid);
        full.push(await secondsAsync(() => ctl.replicate(VOLUME, 'a0', 'a1', { wait: true })));
        fullCpu.push(processCpuSeconds(a0Pid) + processCpuSeconds(a1Pid) - cpu0);
      };
      const nbdPeer = () => {
        const cpu0 = processCpuSeconds(served.proc.pid!) + endedChildrenCpuSeconds();
        copyNbd.push(seconds(() => execFileSync('nbdcopy', [served.uri, copyTo], { stdio: 'ignore' })));
        copyNbdCpu.push(processCpuSeconds(served.proc.pid!) + endedChildrenCpuSeconds() - cpu0);
        fs.rmSync(copyTo);
      };
      const filePeer = () => {
        const cpu0 = endedChildrenCpuSeconds();
        copy.push(seconds(() => execFileSync('nbdcopy', [a0Base, copyTo], { stdio: 'ignore' })));
        copyCpu.push(endedChildrenCpuSeconds() - cpu0);
        fs.rmSync(copyTo);
      };
      await inTurn(round, [run, nbdPeer, filePeer]);
    }
    served.proc.kill('SIGTERM');
    // The full rows now, so that they are not lost when a later part fails.
    const mbps = (bytes: number, s: number) => bytes / 1e6 / s;
    const cpuPerGb = (cpu: number[]) => median(cpu) / (DEVICE / 1e9);
    const fullMbps = mbps(DEVICE, median(full));
    const copyNbdMbps = mbps(DEVICE, median(copyNbd));
    const copyMbps = mbps(DEVICE, median(copy));
    const nbdRatio = fullMbps / copyNbdMbps;
    const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join('/');
    const cpu = (xs: number[]) => `${cpuPerGb(xs).toFixed(2)} CPU-s/GB`;
    console.log(
      `replication on ${base} (loopback), ${DEVICE / MiB} MiB volume of random data; medians of ${ROUNDS} rounds in turn\n`,
    );
    console.log(
      `full replication      ${fullMbps.toFixed(0).padStart(6)} MB/s   ${cpu(fullCpu)} (a0 + a1)   (s: ${runs(full)})`,
    );
    console.log(
      `  nbdcopy over NBD    ${copyNbdMbps.toFixed(0).padStart(6)} MB/s   ${cpu(copyNbdCpu)} (nbdkit + nbdcopy)   ratio ${nbdRatio.toFixed(2)}   (nbdkit file -r on loopback TCP; s: ${runs(copyNbd)})`,
    );
    console.log(
      `  nbdcopy file->file  ${copyMbps.toFixed(0).padStart(6)} MB/s   ${cpu(copyCpu)} (nbdcopy)   ratio ${(fullMbps / copyMbps).toFixed(2)}   (the floor: no network; s: ${runs(copy)})`,
    );
    console.log(
      `  bar: full replication >= 0.8x nbdcopy over NBD (what a user would run between hosts: the same copies and a network hop): ${nbdRatio.toFixed(2)}, ${nbdRatio >= 0.8 ? 'met' : 'not met'}`,
    );

    // 2. diff replication of DIFF_BYTES of writes vs rsync of the same wdiff files, alternating.
    const diff: number[] = [];
    const rsync: number[] = [];
    let diffFileBytes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const before = new Set(wdiffs(a0Data));
      writeRandom(nbd, VOLUME, DEVICE, DIFF_BYTES, MiB);
      await ctl.snapshot(VOLUME, { wait: true });
      const fresh = wdiffs(a0Data).filter((f) => !before.has(f));
      diffFileBytes = fresh.reduce((a, f) => a + fs.statSync(f).size, 0);
      const run = async () =>
        diff.push(await secondsAsync(() => ctl.replicate(VOLUME, 'a0', 'a1', { wait: true })));
      const peer = () => {
        const to = path.join(work, 'rsync-to');
        fs.mkdirSync(to, { recursive: true });
        rsync.push(seconds(() => execFileSync('rsync', ['-a', ...fresh, `${to}/`], { stdio: 'ignore' })));
        fs.rmSync(to, { recursive: true });
      };
      await alternate(round, run, peer);
    }

    // 3. a1 synchronizing; snapshot -> restorable on both under a steady write load.
    await ctl.startSynchronizing(VOLUME, 'a1');
    const writer = loadWriter(nbd, VOLUME, DEVICE, LOAD_MBPS);
    const lsidBefore = (await wdevd.status(VOLUME)).lsids!.latest;
    const loadStart = Date.now();
    await new Promise((res) => setTimeout(res, 2000));
    const lat: number[] = [];
    // An overflow ends this part only: the rows measured before it are still printed.
    let overflowed = '';
    try {
      for (let i = 0; i < SNAPSHOTS; i++) {
        const t0 = Date.now();
        const gid = await ctl.snapshot(VOLUME);
        const watching = new AbortController();
        try {
          await Promise.race([
            Promise.all(['a0', 'a1'].map((a) => ctl.waitRestorable(VOLUME, gid, a, 120_000))),
            logOverflow(wdevd, watching.signal),
          ]);
        } finally {
          watching.abort();
        }
        lat.push(Date.now() - t0);
        await new Promise((res) => setTimeout(res, 500));
      }
    } catch (err) {
      if (!(err instanceof LogOverflow)) throw err;
      overflowed = `${err.message} after ${lat.length} of ${SNAPSHOTS} snapshots`;
    } finally {
      writer.kill('SIGTERM');
    }
    const loadMbps =
      (((await wdevd.status(VOLUME)).lsids!.latest - lsidBefore) * 4096) /
      1e6 /
      ((Date.now() - loadStart) / 1000);
    lat.sort((x, y) => x - y);
    const peak = { archive: peakMib('archive') };
    ctl.close();
    wdevd.close();

    const diffMbps = mbps(diffFileBytes, median(diff));
    const rsyncMbps = mbps(diffFileBytes, median(rsync));
    console.log(
      `diff replication      ${diffMbps.toFixed(0).padStart(6)} MB/s   rsync (same wdiff files)  ${rsyncMbps.toFixed(0)} MB/s   ratio ${(diffMbps / rsyncMbps).toFixed(2)}   (${(diffFileBytes / 1e6).toFixed(0)} MB of wdiffs for ${DIFF_BYTES / MiB} MiB written; s: ${runs(diff)} vs ${runs(rsync)})`,
    );
    console.log(
      `snapshot->restorable on both archives (a1 synchronizing)  ${overflowed || `median ${median(lat)} ms, worst ${lat[lat.length - 1]} ms of ${SNAPSHOTS}`}, under ${loadMbps.toFixed(0)} MB/s of writes`,
    );
    console.log(`peak memory           primary archive ${peak.archive} MiB (VmHWM at the end)`);
    console.log(
      JSON.stringify({
        bench: 'repl',
        dir: base,
        deviceMb: DEVICE / MiB,
        rounds: ROUNDS,
        full: {
          mbps: fullMbps,
          runs: full,
          nbdcopyMbps: copyMbps,
          nbdcopyRuns: copy,
          cpuPerGb: cpuPerGb(fullCpu),
          nbdcopyCpuPerGb: cpuPerGb(copyCpu),
          nbdcopyNbdMbps: copyNbdMbps,
          nbdcopyNbdRuns: copyNbd,
          nbdcopyNbdCpuPerGb: cpuPerGb(copyNbdCpu),
        },
        diff: { mbps: diffMbps, bytes: diffFileBytes, runs: diff, rsyncMbps, rsyncRuns: rsync },
        snapshotMs: { median: median(lat), worst: lat[lat.length - 1], n: lat.length, overflowed },
        loadMbps,
        peakMib: peak,
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
  process.stderr.write(`bench:repl: ${(err as Error).message}\n`);
  process.exit(1);
});
