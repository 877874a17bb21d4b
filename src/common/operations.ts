// Long commands answer at once with an operation that can be read, watched and cancelled (docs/servers.md §3.5). The
// registry keeps running operations and the last finished ones per volume, and serves the walb.v1.Operations
// gRPC service.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import { WalbError, cancelled, errorCode, errorMessage } from './errors';
import { unary } from './grpc';
import type { Operation } from '../generated/walb/v1/Operation';
import type { OperationsHandlers } from '../generated/walb/v1/Operations';

export type OperationState = 'running' | 'done' | 'failed' | 'cancelled';

export interface OperationHandle {
  readonly id: string;
  readonly signal: AbortSignal;
  progress(done: number, total?: number): void;
}

const KEEP_FINISHED = 20;
const PROGRESS_EVERY_MS = 100;

export class OperationRegistry {
  private readonly ops = new Map<string, Operation & { id: string; volume: string; state: OperationState }>();
  private readonly aborts = new Map<string, AbortController>();
  private readonly events = new EventEmitter();
  /** Operations started and finished since the server started, by kind (kept when the finished ones are pruned). */
  private readonly counts = new Map<string, { started: number; finished: Map<OperationState, number> }>();

  constructor() {
    this.events.setMaxListeners(0);
  }

  /** Starts `work` in the background; returns the operation as it is now (running). */
  start(kind: string, volume: string, work: (op: OperationHandle) => Promise<string | void>): Operation {
    const id = crypto.randomUUID();
    const o = {
      id,
      kind,
      volume,
      state: 'running' as OperationState,
      done: 0,
      total: 0,
      errorCode: '',
      error: '',
      startedMs: Date.now(),
      endedMs: 0,
      result: '',
    };
    this.ops.set(id, o);
    const count = this.countsOf(kind);
    count.started++;
    const abort = new AbortController();
    this.aborts.set(id, abort);
    let lastEmit = 0;
    const handle: OperationHandle = {
      id,
      signal: abort.signal,
      progress: (done, total) => {
        o.done = done;
        if (total !== undefined) o.total = total;
        const now = Date.now();
        if (now - lastEmit >= PROGRESS_EVERY_MS) {
          lastEmit = now;
          this.emit(o);
        }
      },
    };
    void (async () => {
      try {
        const result = await work(handle);
        // A cancel that came too late to stop the work changes nothing: what it did stands, so the operation is
        // done (a backup reported cancelled must have rolled back).
        o.state = 'done';
        if (typeof result === 'string') o.result = result;
      } catch (err) {
        o.state = abort.signal.aborted ? 'cancelled' : 'failed';
        o.errorCode = abort.signal.aborted ? 'CANCELLED' : (errorCode(err) ?? 'INTERNAL');
        o.error = errorMessage(err);
      }
      o.endedMs = Date.now();
      count.finished.set(o.state, (count.finished.get(o.state) ?? 0) + 1);
      this.aborts.delete(id);
      this.emit(o);
      this.prune(volume);
    })();
    return { ...o };
  }

  get(id: string): Operation {
    const o = this.ops.get(id);
    if (!o) throw new WalbError('NOT_FOUND', `no operation ${id}`);
    return { ...o };
  }

  list(volume = '', finished = false): Operation[] {
    return [...this.ops.values()]
      .filter((o) => (!volume || o.volume === volume) && (finished || o.state === 'running'))
      .map((o) => ({ ...o }));
  }

  /** Per kind: operations started, and finished by outcome, since the server started. */
  tallies(): { kind: string; started: number; finished: [OperationState, number][] }[] {
    return [...this.counts].map(([kind, c]) => ({ kind, started: c.started, finished: [...c.finished] }));
  }

  cancel(id: string): Operation {
    const o = this.get(id);
    this.aborts.get(id)?.abort(cancelled());
    return o;
  }

  /** Resolves with the operation once it has ended. */
  wait(id: string): Promise<Operation> {
    const o = this.get(id);
    if (o.state !== 'running') return Promise.resolve(o);
    return new Promise((resolve) => {
      const on = (x: Operation) => {
        if (x.id !== id || x.state === 'running') return;
        this.events.off('op', on);
        resolve({ ...x });
      };
      this.events.on('op', on);
    });
  }

  /** Handlers of walb.v1.Operations. */
  service(): OperationsHandlers {
    return {
      Get: unary(async (req) => this.get(req.id)),
      Cancel: unary(async (req) => this.cancel(req.id)),
      List: unary(async (req) => ({ operations: this.list(req.volume, req.finished) })),
      Watch: (call) => {
        let o: Operation;
        try {
          o = this.get(call.request.id);
        } catch (err) {
          call.destroy(err as Error);
          return;
        }
        call.write(o);
        if (o.state !== 'running') return call.end();
        const on = (x: Operation) => {
          if (x.id !== o.id) return;
          call.write({ ...x });
          if (x.state !== 'running') {
            this.events.off('op', on);
            call.end();
          }
        };
        this.events.on('op', on);
        call.on('cancelled', () => this.events.off('op', on));
      },
    };
  }

  private countsOf(kind: string) {
    let c = this.counts.get(kind);
    if (!c) {
      c = { started: 0, finished: new Map() };
      this.counts.set(kind, c);
    }
    return c;
  }

  private emit(o: Operation): void {
    this.events.emit('op', { ...o });
  }

  private prune(volume: string): void {
    const finished = [...this.ops.values()].filter((o) => o.volume === volume && o.state !== 'running');
    for (const o of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.ops.delete(o.id);
  }
}
