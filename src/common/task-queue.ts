// Delayed tasks keyed by name (docs/servers.md §3.3): the storage queues one wlog-send task per volume, the proxy
// one wdiff-send task per (volume, archive). A task is queued at most once: push() keeps an earlier due time,
// pushForce() replaces it. Due tasks run on a pool of `concurrency` workers (the -bg limit, across all volumes);
// a task never runs twice at once. The worker's result says what next: done, again after a delay, or again now.
export type TaskResult = { again: false } | { again: true; delayMs: number };

export class TaskQueue<K extends string> {
  private readonly due = new Map<K, number>();
  private readonly running = new Set<K>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly work: (key: K) => Promise<TaskResult>,
    private readonly onError: (key: K, err: unknown) => number = () => 1000,
  ) {}

  /** Queue `key` to run in `delayMs`, unless it is queued already (then its earlier due time stays). */
  push(key: K, delayMs = 0): void {
    if (this.stopped || this.due.has(key)) return;
    this.due.set(key, Date.now() + delayMs);
    this.schedule();
  }

  /** Queue `key` to run in `delayMs`, replacing any due time it had. */
  pushForce(key: K, delayMs = 0): void {
    if (this.stopped) return;
    this.due.set(key, Date.now() + delayMs);
    this.schedule();
  }

  remove(key: K): void {
    this.due.delete(key);
  }

  /** Every queued task becomes due now (walbc kick). */
  kickAll(): void {
    const now = Date.now();
    for (const k of this.due.keys()) this.due.set(k, now);
    this.schedule();
  }

  queued(): { key: K; dueInMs: number }[] {
    const now = Date.now();
    return [...this.due].map(([key, at]) => ({ key, dueInMs: Math.max(0, at - now) }));
  }

  isRunning(key: K): boolean {
    return this.running.has(key);
  }

  /** No new runs; resolves when the running ones have finished. Queued tasks are dropped. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.due.clear();
    if (this.timer) clearTimeout(this.timer);
    if (this.running.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const now = Date.now();
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
      this.timer = setTimeout(() => this.schedule(), Math.max(0, next - Date.now()));
      this.timer.unref();
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
