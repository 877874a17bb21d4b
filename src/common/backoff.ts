// Retry delays per key (a volume, a volume and archive): doubling from the first delay up to the longest, each
// shortened by a random part of up to JITTER so that peers failing together do not retry together.
export const JITTER = 0.2;

export class Backoff<K> {
  /** The last delay of each key before jitter. */
  private readonly last = new Map<K, number>();

  constructor(
    private readonly firstMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next try of `key`: the first delay, then twice the last, at most the longest. */
  next(key: K): number {
    const prev = this.last.get(key);
    const delay = Math.min(prev === undefined ? this.firstMs : prev * 2, this.maxMs);
    this.last.set(key, delay);
    return Math.round(delay * (1 - JITTER * this.random()));
  }

  /** `key` succeeded (or the operator asked for a retry now): its next delay is the first again. */
  reset(key: K): void {
    this.last.delete(key);
  }

  clear(): void {
    this.last.clear();
  }
}
