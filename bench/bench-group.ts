// The backup group the benchmarks run (bench:group, bench:hash): one of each server on loopback (src/demo), their
// files under WALB_BENCH_DIR (default /dev/shm), and a wdev `bench` of random data — nothing to skip as zero,
// nothing that compresses — with the volume initialized on every server.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller } from '../src/controller/controller';
import { type LocalGroup, type Processes, startLocalGroup } from '../src/demo/processes';
import { native } from '../src/native';
import { WdevClient } from '../src/wdev/client';
import { processCpuSeconds } from './measure';

/** Where the benchmarks put their files: WALB_BENCH_DIR, else /dev/shm (tmpfs), else the temp directory. */
export function benchDir(): string {
  return process.env.WALB_BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
}

export interface BenchGroup extends LocalGroup {
  ctl: Controller;
  wdevd: WdevClient;
  /** The wdev's data device file. */
  ddev: string;
  /** Peak resident memory of a server so far [MiB] (VmHWM). */
  peakMib(which: 'storage' | 'archive'): number;
  /** CPU time a server has used so far [s]: user and system, all its threads (/proc/PID/stat). */
  cpuSeconds(which: 'proxy' | 'archive'): number;
}

/**
 * Starts the group in `work` with a wdev of `deviceBytes` of random data. `warm(from, to)` copies a file with the
 * peer's tool: done twice first, because on a VM memory never touched costs several times more to fill the first
 * time, and neither side of a comparison should pay it.
 */
export async function startBenchGroup(
  procs: Processes,
  work: string,
  deviceBytes: number,
  warm: (from: string, to: string) => void,
): Promise<BenchGroup> {
  const group = await startLocalGroup(procs, work);
  const ldev = path.join(work, 'bench.ldev');
  const ddev = path.join(work, 'bench.ddev');
  fs.writeFileSync(ldev, '');
  // A log as large as the device (at least 512 MiB): room for the benchmarks' bursts while shipping lags on a busy
  // machine (at 512 MiB, bench:repl's 50 MB/s load overflowed it within seconds of shipping falling to 18 MB/s).
  fs.truncateSync(ldev, Math.max(512 << 20, deviceBytes));
  const fh = fs.openSync(ddev, 'w');
  for (let off = 0; off < deviceBytes; off += 16 << 20)
    fs.writeSync(fh, crypto.randomBytes(16 << 20), 0, 16 << 20, off);
  fs.closeSync(fh);
  for (const w of ['warm1', 'warm2']) warm(ddev, path.join(work, w));
  for (const w of ['warm1', 'warm2']) fs.rmSync(path.join(work, w));
  await native.formatLdev(ldev, { pbs: 4096, deviceSize: deviceBytes / 512, name: 'bench' });
  const wdevd = new WdevClient(group.wdevdSocket, 60000);
  await wdevd.createWdev({ ldev, ddev, name: 'bench' });
  const ctl = new Controller({
    storages: [{ id: 's0', address: group.storage }],
    proxies: [{ id: 'p0', address: group.proxy }],
    archives: [{ id: 'a0', address: group.archive }],
  });
  await ctl.initVolume('bench', 'bench');
  const peakMib = (which: 'storage' | 'archive') => {
    const pid = (which === 'storage' ? group.storageProc : group.archiveProc).pid;
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  };
  const cpuSeconds = (which: 'proxy' | 'archive') =>
    processCpuSeconds((which === 'proxy' ? group.proxyProc : group.archiveProc).pid!);
  return { ...group, ctl, wdevd, ddev, peakMib, cpuSeconds };
}

/** fio's nbd engine writing `bytes` of random data in 1 MiB blocks from offset 0 as fast as it can; returns when done. */
export function writeBurst(socket: string, volume: string, bytes: number): void {
  execFileSync(
    'fio',
    [
      '--name=burst',
      '--ioengine=nbd',
      `--uri=nbd+unix:///${volume}?socket=${socket}`,
      '--rw=write',
      '--bs=1M',
      '--refill_buffers',
      `--size=${bytes}`,
    ],
    { stdio: 'ignore' },
  );
}

/**
 * fio's nbd engine writing `bytes` of random data at random `blockBytes` places of the export `volume` of a device of
 * `deviceBytes` (each place once); returns when done.
 */
export function writeRandom(
  socket: string,
  volume: string,
  deviceBytes: number,
  bytes: number,
  blockBytes: number,
): void {
  execFileSync(
    'fio',
    [
      '--name=diff',
      '--ioengine=nbd',
      `--uri=nbd+unix:///${volume}?socket=${socket}`,
      '--rw=randwrite',
      `--bs=${blockBytes}`,
      `--size=${deviceBytes}`,
      `--io_size=${bytes}`,
      '--refill_buffers',
      '--end_fsync=1',
    ],
    { stdio: 'ignore' },
  );
}

/**
 * fio's nbd engine writing 1 MiB blocks at `mbps` to the export `volume` of a device of `deviceBytes`; bounded by
 * its runtime, stopped earlier by the caller when done.
 */
export function loadWriter(socket: string, volume: string, deviceBytes: number, mbps: number): ChildProcess {
  return spawn(
    'fio',
    [
      '--name=load',
      '--ioengine=nbd',
      `--uri=nbd+unix:///${volume}?socket=${socket}`,
      '--rw=randwrite',
      '--bs=1M',
      `--rate=${mbps}m`,
      `--size=${deviceBytes}`,
      '--time_based',
      '--runtime=600',
    ],
    { stdio: 'ignore' },
  );
}
