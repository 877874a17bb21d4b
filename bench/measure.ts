// What every benchmark measures with: medians, wall-clock seconds, and the alternation of ours and the peer's runs.

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
