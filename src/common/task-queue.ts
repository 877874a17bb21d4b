// Delayed tasks keyed by name (docs/servers.md §3.3): the storage queues one wlog-send task per volume, the proxy
// one wdiff-send task per (volume, archive). A task is queued at most once: push() keeps the due time it has,
// pushForce() replaces it. Due tasks run in due-time order on a pool of `concurrency` workers (the -bg limit,
// across all volumes); a task never runs twice at once: queued while it runs, it runs again after. The worker's
// result says what next: done, or again after a delay; a failed run is retried after the delay onError gives.
// Time comes from a Clock, the real one unless a test brings its own.
export type TaskResult = { again: false } | { again: true; delayMs: number };

/** Time and timers, injectable so that a test controls the queue's clock. */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; the returned function cancels the call. */
  after(ms: number, fn: () => void): () => void;
}

/** Wall-clock time; its timers do not keep the process alive. */
export const realClock: Clock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export class TaskQueue<K extends string> {
  private readonly due = new Map<K, number>();
  private readonly running = new Set<K>();
  private cancelTimer: (() => void) | undefined;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly work: (key: K) => Promise<TaskResult>,
    private readonly onError: (key: K, err: unknown) => number = () => 1000,
    private readonly clock: Clock = realClock,
  ) {}

  /** Queue `key` to run in `delayMs`, unless it is queued already (then its earlier due time stays). */
  push(key: K, delayMs = 0): void {
    if (this.stopped || this.due.has(key)) return;
    this.due.set(key, this.clock.now() + delayMs);
    this.schedule();
  }

  /** Queue `key` to run in `delayMs`, replacing any due time it had. */
  pushForce(key: K, delayMs = 0): void {
    if (this.stopped) return;
    this.due.set(key, this.clock.now() + delayMs);
    this.schedule();
  }

  remove(key: K): void {
    this.due.delete(key);
  }

  /** Every queued task becomes due now (walbc kick). */
  kickAll(): void {
    const now = this.clock.now();
    for (const k of this.due.keys()) this.due.set(k, now);
    this.schedule();
  }

  queued(): { key: K; dueInMs: number }[] {
    const now = this.clock.now();
    return [...this.due].map(([key, at]) => ({ key, dueInMs: Math.max(0, at - now) }));
  }

  isRunning(key: K): boolean {
    return this.running.has(key);
  }

  /** No new runs; resolves when the running ones have finished. Queued tasks are dropped. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.due.clear();
    this.cancelTimer?.();
    if (this.running.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const now = this.clock.now();
    let next = Infinity;
    for (const [key, at] of [...this.due].sort((a, b) => a[1] - b[1])) {
      if (this.running.has(key)) continue; // runs again after the current run, if still queued
      if (at > now) {
        next = Math.min(next, at);
        continue;
      }
      if (this.running.size >= this.concurrency) break;
      this.due.delete(key);
      this.start(key);
    }
    if (next !== Infinity) {
      this.cancelTimer = this.clock.after(Math.max(0, next - this.clock.now()), () => this.schedule());
    }
  }

  private start(key: K): void {
    this.running.add(key);
    void this.work(key)
      .then(
        (r) => {
          if (r.again) this.pushForce(key, r.delayMs);
        },
        (err: unknown) => this.pushForce(key, this.onError(key, err)),
      )
      .finally(() => {
        this.running.delete(key);
        if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
        this.schedule();
      });
  }
}
