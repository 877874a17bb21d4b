// Per-volume state of the servers (docs/servers.md §3.1): a table of allowed edges `from --via--> to`. A command
// enters the transient state `via` by a transaction from a steady state; commit moves to `to` (persisting it first
// when the role persists steady states); any failure rolls back to where it started. Besides the state: action
// counters (e.g. a wlog send in progress) and the stop flag that long loops poll.
import { WalbError } from './errors';

export interface Edge<S extends string> {
  from: S;
  via: S;
  to: S;
}

export type StopFlag = 'not-stopping' | 'waiting-for-empty' | 'stopping' | 'force-stopping';

export class VolumeState<S extends string> {
  private current: S;
  private readonly actions = new Map<string, { running: number; lastStart: number }>();
  private stopFlag: StopFlag = 'not-stopping';
  private waiters: (() => void)[] = [];

  /**
   * @param edges the allowed transactions
   * @param initial the steady state loaded from disk (or the role's initial state)
   * @param persist called with the new steady state before a commit takes effect; a rejection aborts the commit
   */
  constructor(
    readonly volume: string,
    private readonly edges: readonly Edge<S>[],
    initial: S,
    private readonly persist?: (state: S) => Promise<void>,
  ) {
    this.current = initial;
  }

  get state(): S {
    return this.current;
  }

  get stop(): StopFlag {
    return this.stopFlag;
  }

  set stop(flag: StopFlag) {
    this.stopFlag = flag;
    this.notify();
  }

  /** Throws (FAILED_PRECONDITION) unless the volume is in one of `states`. */
  require(states: readonly S[], what: string): void {
    if (!states.includes(this.current))
      throw new WalbError(
        'FAILED_PRECONDITION',
        `${what}: volume ${this.volume} is ${this.current}, needs ${states.join(' or ')}`,
      );
  }

  /**
   * Runs `work` inside the transaction `via` (which must start from the current state): the state is `via` while
   * it runs, `to` after it succeeds (persisted first), and back to where it was if it throws.
   */
  async transact<T>(via: S, work: () => Promise<T>, to?: S): Promise<T> {
    const edge = this.edges.find(
      (e) => e.via === via && e.from === this.current && (to === undefined || e.to === to),
    );
    if (!edge) {
      const from = this.edges.filter((e) => e.via === via).map((e) => e.from);
      throw new WalbError(
        'FAILED_PRECONDITION',
        `volume ${this.volume} is ${this.current}; ${via} needs ${from.length ? [...new Set(from)].join(' or ') : 'an unknown state'}`,
      );
    }
    const from = this.current;
    this.current = via;
    this.notify();
    try {
      const result = await work();
      if (this.persist) await this.persist(edge.to);
      this.current = edge.to;
      return result;
    } catch (err) {
      this.current = from;
      throw err;
    } finally {
      this.notify();
    }
  }

  /** Sets a steady state directly (used at startup recovery and for automatic moves like Target → Stopped). */
  async set(state: S): Promise<void> {
    if (this.persist) await this.persist(state);
    this.current = state;
    this.notify();
  }

  beginAction(name: string): () => void {
    const a = this.actions.get(name) ?? { running: 0, lastStart: 0 };
    a.running++;
    a.lastStart = Date.now();
    this.actions.set(name, a);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      a.running--;
      this.notify();
    };
  }

  runningActions(): string[] {
    return [...this.actions].filter(([, a]) => a.running > 0).map(([n]) => n);
  }

  isSteady(): boolean {
    return !this.edges.some((e) => e.via === this.current);
  }

  /**
   * Waits until the state is steady and no action runs (WalB's wait-until, 60 s by default); FAILED_PRECONDITION
   * when it does not happen in time.
   */
  async waitUntilIdle(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(this.isSteady() && this.runningActions().length === 0)) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new WalbError(
          'FAILED_PRECONDITION',
          `volume ${this.volume}: still ${this.current} with actions [${this.runningActions().join(', ')}] after ${timeoutMs} ms`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
