// What every benchmark measures with: medians, wall-clock seconds, CPU seconds, and the alternation of ours and the
// peer's runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** The median (the upper one of an even count). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
}

/** Wall-clock seconds of a synchronous run. */
export function seconds(fn: () => unknown): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Wall-clock seconds of an asynchronous run. */
export async function secondsAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** The fields of /proc/PID/stat after the command name (which may hold spaces): [0] is field 3, the state. */
function statFields(pid: number | 'self'): number[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
}

/** CPU time a running process has used so far [s]: user and system, all its threads (fields 14 and 15). */
export function processCpuSeconds(pid: number): number {
  const f = statFields(pid);
  return (f[11] + f[12]) / ticksPerSecond;
}

/** CPU time of this process's children that have ended and been waited for [s] (fields 16 and 17). */
export function endedChildrenCpuSeconds(): number {
  const f = statFields('self');
  return (f[13] + f[14]) / ticksPerSecond;
}

/** Ours then the peer in even rounds, the peer first in odd ones, so that neither always runs on a warmer machine. */
export async function alternate(
  round: number,
  ours: () => Promise<unknown>,
  peer: () => unknown,
): Promise<void> {
  if (round % 2 === 0) {
    await ours();
    await peer();
  } else {
    await peer();
    await ours();
  }
}

/** Every run once, in an order turned by one place each round, so that none always runs first or last. */
export async function inTurn(round: number, runs: ReadonlyArray<() => unknown>): Promise<void> {
  for (let i = 0; i < runs.length; i++) await runs[(i + round) % runs.length]();
}
