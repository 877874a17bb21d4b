// The delayed task queue of the storage and proxy servers (docs/servers.md §3.3), driven by a test clock: time
// moves only when a test advances it, so due times, delays and retries are pinned to the millisecond without sleeps.
import test from 'ava';
import { TaskQueue, type Clock, type TaskResult } from '../../src/common/task-queue';

/** A clock that moves only on advance(); it fires due timers in time order and lets their promises settle. */
class TestClock implements Clock {
  private time = 0;
  private readonly timers = new Set<{ at: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.time + ms, fn };
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }

  /** Resolves after `ms` of this clock's time. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  pendingTimers(): number {
    return this.timers.size;
  }

  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await settle();
      let next: { at: number; fn: () => void } | undefined;
      for (const t of this.timers) if (t.at <= end && (next === undefined || t.at < next.at)) next = t;
      if (next === undefined) break;
      this.timers.delete(next);
      this.time = next.at;
      next.fn();
    }
    this.time = end;
    await settle();
  }
}

/** Lets every pending promise job run (the queue's own chains are promise jobs only). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A queue whose runs each take `runMs` of test time; it records what ran when, and how many ran at once. */
function recordingQueue(
  concurrency: number,
  opts: {
    runMs?: number;
    result?: (key: string, n: number) => TaskResult | Error;
    onError?: () => number;
  } = {},
) {
  const clock = new TestClock();
  const starts: { key: string; at: number }[] = [];
  const running = new Map<string, number>();
  let peak = 0;
  let overlap = false;
  const q = new TaskQueue<string>(
    concurrency,
    async (key) => {
      starts.push({ key, at: clock.now() });
      const n = starts.filter((s) => s.key === key).length;
      running.set(key, (running.get(key) ?? 0) + 1);
      if (running.get(key)! > 1) overlap = true;
      peak = Math.max(
        peak,
        [...running.values()].reduce((a, b) => a + b, 0),
      );
      await clock.sleep(opts.runMs ?? 0);
      running.set(key, running.get(key)! - 1);
      const r = opts.result?.(key, n) ?? { again: false };
      if (r instanceof Error) throw r;
      return r;
    },
    opts.onError,
    clock,
  );
  return {
    q,
    clock,
    starts,
    keys: () => starts.map((s) => s.key),
    peak: () => peak,
    overlap: () => overlap,
  };
}

test('a pushed task runs when its delay has passed, not a millisecond before', async (t) => {
  const { q, clock, starts } = recordingQueue(1);
  q.push('vol0', 50);
  await clock.advance(49);
  t.deepEqual(starts, []);
  t.deepEqual(q.queued(), [{ key: 'vol0', dueInMs: 1 }]);
  await clock.advance(1);
  t.deepEqual(starts, [{ key: 'vol0', at: 50 }]);
  t.deepEqual(q.queued(), []);
  await q.stop();
});

test('a task pushed without a delay runs at once', async (t) => {
  const { q, clock, starts } = recordingQueue(1);
  q.push('vol0');
  await clock.advance(0);
  t.deepEqual(starts, [{ key: 'vol0', at: 0 }]);
  await q.stop();
});

test('a task queued twice runs once; push keeps its due time, even a later one; pushForce moves it', async (t) => {
  const { q, clock, starts } = recordingQueue(1);
  q.push('vol0', 50);
  q.push('vol0', 0); // keeps the due time it has
  await clock.advance(20);
  t.deepEqual(starts, []);
  q.pushForce('vol0', 0);
  await clock.advance(0);
  t.deepEqual(starts, [{ key: 'vol0', at: 20 }]);
  await clock.advance(100);
  t.is(starts.length, 1, 'not run again at the first due time');
  await q.stop();
});

test('pushForce can also put a due task later', async (t) => {
  const { q, clock, starts } = recordingQueue(1);
  q.push('vol0', 10);
  q.pushForce('vol0', 100);
  await clock.advance(99);
  t.deepEqual(starts, []);
  await clock.advance(1);
  t.deepEqual(starts, [{ key: 'vol0', at: 100 }]);
  await q.stop();
});

test('due tasks run in due-time order; tasks due at the same time in the order they were queued', async (t) => {
  const { q, clock, keys } = recordingQueue(1, { runMs: 5 });
  q.push('late', 30);
  q.push('early', 10);
  q.push('middle', 20);
  q.push('tie1', 40);
  q.push('tie2', 40);
  await clock.advance(100);
  t.deepEqual(keys(), ['early', 'middle', 'late', 'tie1', 'tie2']);
  await q.stop();
});

test('no more than `concurrency` tasks run at once; a waiting task starts as soon as a worker is free', async (t) => {
  const { q, clock, starts, peak, overlap } = recordingQueue(2, { runMs: 20 });
  for (const k of ['a', 'b', 'c', 'd', 'e']) q.push(k);
  q.pushForce('a'); // while a runs: queued again, runs after it
  await clock.advance(100);
  t.is(peak(), 2);
  t.false(overlap());
  t.deepEqual(starts, [
    { key: 'a', at: 0 },
    { key: 'b', at: 0 },
    { key: 'c', at: 20 },
    { key: 'd', at: 20 },
    { key: 'e', at: 40 },
    { key: 'a', at: 40 },
  ]);
  await q.stop();
});

test('a task queued while it runs runs again after the run ends, never twice at the same time', async (t) => {
  const { q, clock, starts, overlap, peak } = recordingQueue(2, { runMs: 20 });
  q.push('a');
  await clock.advance(5);
  t.true(q.isRunning('a'));
  q.pushForce('a'); // due now, but 'a' is running: it waits for the run to end although a worker is free
  q.push('b', 1);
  await clock.advance(50);
  t.false(overlap());
  t.is(peak(), 2);
  t.deepEqual(starts, [
    { key: 'a', at: 0 },
    { key: 'b', at: 6 },
    { key: 'a', at: 20 },
  ]);
  t.false(q.isRunning('a'));
  await q.stop();
});

test('a task queued while it runs with a due time after the run ends runs at that due time', async (t) => {
  const { q, clock, starts } = recordingQueue(1, { runMs: 20 });
  q.push('a');
  await clock.advance(5);
  q.push('a', 45);
  await clock.advance(100);
  t.deepEqual(
    starts.map((s) => s.at),
    [0, 50],
  );
  await q.stop();
});

test('a worker asks to run again after a delay, counted from the end of its run', async (t) => {
  const { q, clock, starts } = recordingQueue(1, {
    runMs: 10,
    result: (_k, n) => (n < 3 ? { again: true, delayMs: 30 } : { again: false }),
  });
  q.push('vol0');
  await clock.advance(1000);
  t.deepEqual(
    starts.map((s) => s.at),
    [0, 40, 80],
  );
  t.deepEqual(q.queued(), []);
  await q.stop();
});

test('a failed run is retried after the delay onError gives; without onError after 1 s', async (t) => {
  let failures = 0;
  const given = recordingQueue(1, {
    result: (_k, n) =>
      n === 2 ? new Error('proxy down') : n < 4 ? { again: true, delayMs: 10 } : { again: false },
    onError: () => {
      failures++;
      return 25;
    },
  });
  given.q.push('vol0');
  await given.clock.advance(1000);
  t.deepEqual(
    given.starts.map((s) => s.at),
    [0, 10, 35, 45],
  );
  t.is(failures, 1);
  t.false(given.q.isRunning('vol0'));
  t.deepEqual(given.q.queued(), []);
  await given.q.stop();

  const byDefault = recordingQueue(1, {
    result: (_k, n) => (n === 1 ? new Error('archive down') : { again: false }),
  });
  byDefault.q.push('vol0');
  await byDefault.clock.advance(999);
  t.is(byDefault.starts.length, 1);
  await byDefault.clock.advance(1);
  t.deepEqual(
    byDefault.starts.map((s) => s.at),
    [0, 1000],
  );
  await byDefault.q.stop();
});

test('remove cancels a queued task; removing a running one lets the run end and drops its re-queue', async (t) => {
  const { q, clock, keys } = recordingQueue(1, { runMs: 20 });
  q.push('gone', 10);
  q.push('running');
  q.remove('gone');
  await clock.advance(5);
  q.push('running', 1); // re-queued while it runs ...
  q.remove('running'); // ... and cancelled again
  t.true(q.isRunning('running'), 'remove does not stop a run');
  await clock.advance(100);
  t.deepEqual(keys(), ['running']);
  t.deepEqual(q.queued(), []);
  await q.stop();
});

test('kickAll makes every queued task due now; stop waits for the running one and drops the rest', async (t) => {
  const { q, clock, keys } = recordingQueue(1, { runMs: 30 });
  q.push('a', 10_000);
  q.push('b', 10_000);
  q.kickAll();
  await clock.advance(0);
  t.deepEqual(keys(), ['a']);
  t.deepEqual(q.queued(), [{ key: 'b', dueInMs: 0 }]);
  let stopped = false;
  const stopping = q.stop().then(() => (stopped = true));
  await clock.advance(29);
  t.false(stopped, 'stop waits for the running task');
  await clock.advance(1);
  await stopping;
  await clock.advance(20_000);
  t.deepEqual(keys(), ['a'], 'b was dropped');
  t.deepEqual(q.queued(), []);
});

test('after stop, pushes and a running worker asking to run again queue nothing', async (t) => {
  const { q, clock, keys } = recordingQueue(1, { runMs: 10, result: () => ({ again: true, delayMs: 0 }) });
  q.push('a');
  await clock.advance(0);
  const stopping = q.stop();
  q.push('b');
  q.pushForce('c');
  await clock.advance(10);
  await stopping;
  await clock.advance(1000);
  t.deepEqual(keys(), ['a']);
  t.deepEqual(q.queued(), []);
  t.is(clock.pendingTimers(), 0);
});

test('stop with nothing running resolves at once and cancels the timer of the queued tasks', async (t) => {
  const { q, clock } = recordingQueue(1);
  q.push('a', 500);
  t.is(clock.pendingTimers(), 1);
  await q.stop();
  t.is(clock.pendingTimers(), 0);
});
