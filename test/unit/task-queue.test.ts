// The delayed task queue of the storage and proxy servers (docs/servers.md §3.3).
import test from 'ava';
import { TaskQueue, type TaskResult } from '../../src/common/task-queue';
import { waitUntil } from '../waiting';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a task queued twice runs once; pushForce moves its due time', async (t) => {
  const runs: string[] = [];
  const q = new TaskQueue<string>(1, async (k) => {
    runs.push(k);
    return { again: false };
  });
  q.push('vol0', 50);
  q.push('vol0', 0); // keeps the earlier due time
  await sleep(20);
  t.deepEqual(runs, []);
  q.pushForce('vol0', 0);
  await waitUntil(() => runs.length > 0, 'the task to run');
  t.deepEqual(runs, ['vol0']);
  await sleep(60);
  t.deepEqual(runs, ['vol0'], 'not run again');
  await q.stop();
});

test('no more than `concurrency` tasks run at once, and a task never runs twice at the same time', async (t) => {
  let running = 0;
  let peak = 0;
  const perKey = new Map<string, number>();
  let overlap = false;
  let total = 0;
  const q = new TaskQueue<string>(2, async (k) => {
    running++;
    peak = Math.max(peak, running);
    total++;
    perKey.set(k, (perKey.get(k) ?? 0) + 1);
    if ((perKey.get(k) ?? 0) > 1) overlap = true;
    await sleep(20);
    perKey.set(k, (perKey.get(k) ?? 0) - 1);
    running--;
    return { again: false };
  });
  for (const k of ['a', 'b', 'c', 'd', 'e']) q.push(k);
  q.pushForce('a'); // while a runs: queued again, runs after it
  await waitUntil(() => total === 6 && running === 0, 'six runs, none running');
  t.is(peak, 2);
  t.false(overlap);
  await q.stop();
});

test('a worker asks to run again after a delay; a failing one is retried after the delay onError gives', async (t) => {
  let n = 0;
  let failures = 0;
  const q = new TaskQueue<string>(
    1,
    async (): Promise<TaskResult> => {
      n++;
      if (n === 2) throw new Error('proxy down');
      return n < 4 ? { again: true, delayMs: 10 } : { again: false };
    },
    () => {
      failures++;
      return 10;
    },
  );
  q.push('vol0');
  await waitUntil(() => n >= 4 && !q.isRunning('vol0') && q.queued().length === 0, 'four runs, then idle');
  t.is(n, 4);
  t.is(failures, 1);
  await q.stop();
});

test('kickAll makes every queued task due now; stop waits for the running one and drops the rest', async (t) => {
  const runs: string[] = [];
  const q = new TaskQueue<string>(1, async (k) => {
    runs.push(k);
    await sleep(30);
    return { again: false };
  });
  q.push('a', 10_000);
  q.push('b', 10_000);
  q.kickAll();
  await waitUntil(() => runs.length > 0, 'the task to run');
  t.deepEqual(runs, ['a']);
  await q.stop();
  t.deepEqual(runs, ['a'], 'b was dropped');
  t.deepEqual(q.queued(), []);
});
