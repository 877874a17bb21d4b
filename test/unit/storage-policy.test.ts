// The storage's decisions (src/storage/policy.ts), worked out by hand from docs/servers.md §2.7, §2.8, §4.2, §4.4,
// §7.1 and §7.5, in-process: no wdev, no proxy, no files.
import test from 'ava';
import { errorCode } from '../../src/common/errors';
import type { LsidGid } from '../../src/common/meta';
import {
  NO_DONE,
  PERMANENT_WAIT_MS,
  checkInitVol,
  checkResize,
  chooseRange,
  doneAfterAck,
  freeLogUpTo,
  backupRefused,
  afterHeartbeat,
  heartbeatDue,
  KICK_RETRY_FIRST_MS,
  marksProxyDown,
  maxSendPb,
  needsCheckpoint,
  noProxyTook,
  pendingRecords,
  proxyOrder,
  rangeDiff,
  recordsAfterAck,
  recordsAfterReset,
  snapshotRecord,
  standbyFreeBound,
  startPlan,
  type Records,
  type WlogRange,
} from '../../src/storage/policy';

const rec = (lsid: number, gid: number, isMergeable = true, timestamp = 100): LsidGid => ({
  lsid,
  gid,
  isMergeable,
  timestamp,
});
const DONE0 = rec(0, 0, false, 50);
/** Enough room for any range in these tests unless a test says otherwise. */
const MAX = 1000;

function sent(choice: ReturnType<typeof chooseRange>): WlogRange {
  if (choice.kind !== 'send') throw new Error(`expected a range to send, got ${choice.kind}`);
  return choice.range;
}

test('maxWlogSendMb becomes physical blocks of the wdev, at least one', (t) => {
  t.is(maxSendPb(128, 4096), 32768);
  t.is(maxSendPb(128, 512), 262144);
  t.is(maxSendPb(0, 4096), 1);
});

test('reset-wal makes the done record (0, 0), explicit, at the reset time, with nothing queued', (t) => {
  t.deepEqual(recordsAfterReset(1234), { done: rec(0, 0, false, 1234), queue: [] });
  t.is(NO_DONE.lsid, -1, 'a volume before its first full backup has no done position');
});

test('a snapshot gets the next gid, plus one reserved gid per maxWlogSendPb of log since the newest record', (t) => {
  const r: Records = { done: DONE0, queue: [] };
  t.deepEqual(snapshotRecord(r, 999, false, MAX, 7), rec(999, 1, false, 7));
  t.deepEqual(snapshotRecord(r, 1000, false, MAX, 7), rec(1000, 2, false, 7));
  t.deepEqual(snapshotRecord(r, 2500, true, MAX, 7), rec(2500, 3, true, 7));
  const queued: Records = { done: DONE0, queue: [rec(2500, 3)] };
  t.is(snapshotRecord(queued, 2600, false, MAX, 7).gid, 4, 'counted from the newest queued record');
});

test('a snapshot at an lsid behind the newest record is taken at that record (an empty diff)', (t) => {
  const r: Records = { done: DONE0, queue: [rec(500, 1)] };
  t.deepEqual(snapshotRecord(r, 300, false, MAX, 9), rec(500, 2, false, 9));
});

test('records at or below the done gid leave the queue the wlog task works on', (t) => {
  const r: Records = { done: rec(300, 2), queue: [rec(100, 1), rec(300, 2), rec(400, 3, false, 190)] };
  t.deepEqual(pendingRecords(r, 400, MAX, 10, 200), [rec(400, 3, false, 190)]);
});

test('an implicit snapshot is taken at latest when nothing is queued but logs are', (t) => {
  const r: Records = { done: rec(300, 2), queue: [] };
  t.deepEqual(pendingRecords(r, 450, MAX, 10, 200), [rec(450, 3, true, 200)]);
  t.deepEqual(pendingRecords(r, 300, MAX, 10, 200), [], 'no logs after the done record: nothing to ship');
});

test('an implicit snapshot is added when the newest record is snapshotIntervalSec old and behind latest', (t) => {
  const r: Records = { done: DONE0, queue: [rec(100, 1, false, 190)] };
  t.deepEqual(pendingRecords(r, 400, MAX, 10, 199), [rec(100, 1, false, 190)], 'too young');
  t.deepEqual(pendingRecords(r, 400, MAX, 10, 200), [rec(100, 1, false, 190), rec(400, 2, true, 200)]);
  t.deepEqual(pendingRecords(r, 100, MAX, 10, 500), [rec(100, 1, false, 190)], 'not behind latest');
});

test('nothing queued: no range to send', (t) => {
  t.deepEqual(chooseRange({ done: DONE0, queue: [] }, 500, MAX), { kind: 'nothing-queued' });
});

test('the range extends over implicit records within maxWlogSendPb and stops after an explicit one', (t) => {
  const queue = [rec(100, 1), rec(200, 2, false, 120), rec(300, 3)];
  const range = sent(chooseRange({ done: DONE0, queue }, 500, MAX));
  t.deepEqual(range.end, rec(200, 2, false, 120));
  t.is(range.endLsid, 200);
  t.true(range.whole);
  t.is(range.snapE, 2);
});

test('the range does not extend to a record past permanent or beyond maxWlogSendPb of the done lsid', (t) => {
  const queue = [rec(100, 1), rec(200, 2), rec(1200, 4)];
  t.is(sent(chooseRange({ done: DONE0, queue }, 150, MAX)).end.gid, 1, '200 is past permanent');
  t.is(sent(chooseRange({ done: DONE0, queue }, 2000, MAX)).end.gid, 2, '1200 is beyond maxWlogSendPb');
});

test('a range longer than maxWlogSendPb is capped at done + maxWlogSendPb and ends at the reserved gid', (t) => {
  const queue = [rec(2500, 3, false, 120)];
  const range = sent(chooseRange({ done: DONE0, queue }, 3000, MAX));
  t.false(range.whole);
  t.is(range.endLsid, 1000);
  t.is(range.snapE, 1);
});

test('a long range to the very next gid goes whole (no gid was reserved for it)', (t) => {
  const done = rec(0, 4, false);
  const range = sent(chooseRange({ done, queue: [rec(2500, 5)] }, 3000, MAX));
  t.true(range.whole);
  t.is(range.endLsid, 2500);
  t.is(range.snapE, 5);
});

test('logs of the range not permanent yet: the task comes back in 100 ms', (t) => {
  t.deepEqual(chooseRange({ done: DONE0, queue: [rec(400, 1)] }, 399, MAX), {
    kind: 'not-permanent',
    delayMs: PERMANENT_WAIT_MS,
  });
  t.is(PERMANENT_WAIT_MS, 100);
  t.deepEqual(chooseRange({ done: DONE0, queue: [rec(2500, 3)] }, 999, MAX).kind, 'not-permanent');
  t.is(
    chooseRange({ done: DONE0, queue: [rec(2500, 3)] }, 1000, MAX).kind,
    'send',
    'a capped range needs only its cap',
  );
});

test('the diff of a range is clean, mergeable as its start record, with the end record timestamp', (t) => {
  const range = sent(chooseRange({ done: rec(50, 7, true, 10), queue: [rec(80, 8, false, 99)] }, 100, MAX));
  t.deepEqual(rangeDiff(range), {
    snapB: { gidB: 7, gidE: 7 },
    snapE: { gidB: 8, gidE: 8 },
    mergeable: true,
    timestamp: 99,
  });
});

test('after an acknowledged whole range the done record is the end record at the lsid reached', (t) => {
  const range = sent(chooseRange({ done: DONE0, queue: [rec(200, 2, false, 120)] }, 500, MAX));
  t.deepEqual(doneAfterAck(range, 200), rec(200, 2, false, 120));
});

test('after an acknowledged capped range the done record is the reserved gid, mergeable, with the old timestamp', (t) => {
  const range = sent(chooseRange({ done: DONE0, queue: [rec(2500, 3, false, 120)] }, 3000, MAX));
  t.deepEqual(doneAfterAck(range, 992), rec(992, 1, true, 50));
});

test('an acknowledgement drops the records up to the new done gid and keeps the later ones', (t) => {
  const r: Records = { done: DONE0, queue: [rec(100, 1), rec(200, 2), rec(300, 3)] };
  t.deepEqual(recordsAfterAck(r, rec(200, 2)), { done: rec(200, 2), queue: [rec(300, 3)] });
});

test('the log is freed up to min(done, prev_written), after a checkpoint when done is past prev_written', (t) => {
  const l = { oldest: 100, prevWritten: 300, permanent: 400, latest: 500 };
  t.is(freeLogUpTo(200, l), 200);
  t.false(needsCheckpoint(200, l));
  t.is(freeLogUpTo(350, l), 300, 'never past prev_written (redo may need it)');
  t.true(needsCheckpoint(350, l));
  t.is(freeLogUpTo(100, l), undefined, 'nothing below the oldest lsid to free');
  t.false(needsCheckpoint(100, l));
  t.is(freeLogUpTo(-1, l), undefined, 'no done record yet');
});

test('in Standby the log is freed up to prev_written, after a checkpoint when anything was written past it', (t) => {
  const writing = { oldest: 100, prevWritten: 300, permanent: 400, latest: 500 };
  t.true(
    needsCheckpoint(standbyFreeBound(writing), writing),
    'prev_written must move up to what was written',
  );
  t.is(freeLogUpTo(standbyFreeBound(writing), writing), 300, 'never past prev_written');
  const checkpointed = { oldest: 100, prevWritten: 500, permanent: 500, latest: 500 };
  t.false(needsCheckpoint(standbyFreeBound(checkpointed), checkpointed));
  t.is(freeLogUpTo(standbyFreeBound(checkpointed), checkpointed), 500, 'everything written is freed');
  const idle = { oldest: 500, prevWritten: 500, permanent: 500, latest: 500 };
  t.false(needsCheckpoint(standbyFreeBound(idle), idle), 'an idle log takes no checkpoint');
  t.is(freeLogUpTo(standbyFreeBound(idle), idle), undefined);
});

test('start target runs StartTarget and refuses an overflowed wdev; the empty mode is target', (t) => {
  t.deepEqual(startPlan('target', false, 'w'), { via: 'StartTarget', resetWal: false });
  t.deepEqual(startPlan('', false, 'w'), { via: 'StartTarget', resetWal: false });
  const err = t.throws(() => startPlan('target', true, 'w'));
  t.is(errorCode(err), 'FAILED_PRECONDITION');
  t.regex(err.message, /wdev w overflowed: recover with a hash backup \(walbc hash-backup\)/);
});

test('start standby runs StartStandby and resets the log of an overflowed wdev first', (t) => {
  t.deepEqual(startPlan('standby', false, 'w'), { via: 'StartStandby', resetWal: false });
  t.deepEqual(startPlan('standby', true, 'w'), { via: 'StartStandby', resetWal: true });
});

test('start in another mode is refused with INVALID_ARGUMENT naming the modes', (t) => {
  const err = t.throws(() => startPlan('primary', false, 'w'));
  t.is(errorCode(err), 'INVALID_ARGUMENT');
  t.regex(err.message, /start mode 'primary': target or standby/);
});

test('proxies are tried in priority order, the unavailable ones skipped', (t) => {
  t.deepEqual(proxyOrder([{ available: false }, { available: true }, { available: true }]), [1, 2]);
  t.deepEqual(proxyOrder([{ available: false }]), []);
});

test('the heartbeat checks the proxy due longest ago, ties to the higher priority', (t) => {
  const now = 100_000;
  t.is(heartbeatDue([{ nextCheck: 105_000 }, { nextCheck: 90_000 }, { nextCheck: 95_000 }], now), 1);
  t.is(heartbeatDue([{ nextCheck: 105_000 }, { nextCheck: 101_000 }], now), undefined, 'none due');
  t.is(heartbeatDue([{ nextCheck: 0 }, { nextCheck: 0 }], now), 0, 'a tie goes to the higher priority');
});

test('a proxy is checked again an interval after a check; one a kick could not reach after 1, 2, 4 ... 32 s', (t) => {
  const now = 100_000;
  const interval = 3_600_000;
  t.deepEqual(afterHeartbeat({ kickRetryMs: 0 }, true, now, interval), {
    nextCheck: now + interval,
    kickRetryMs: 0,
  });
  t.deepEqual(afterHeartbeat({ kickRetryMs: 0 }, false, now, interval), {
    nextCheck: now + interval,
    kickRetryMs: 0,
  });
  t.deepEqual(
    afterHeartbeat({ kickRetryMs: KICK_RETRY_FIRST_MS }, true, now, interval),
    { nextCheck: now + interval, kickRetryMs: 0 },
    'an answer ends the retries',
  );
  const waits: number[] = [];
  let state = { kickRetryMs: KICK_RETRY_FIRST_MS };
  while (state.kickRetryMs !== 0) {
    const next = afterHeartbeat(state, false, now, interval);
    waits.push(next.nextCheck - now);
    state = next;
  }
  t.deepEqual(waits, [1000, 2000, 4000, 8000, 16_000, 32_000]);
  t.is(afterHeartbeat(state, false, now, interval).nextCheck, now + interval, 'then the interval again');
  t.deepEqual(
    afterHeartbeat({ kickRetryMs: 8000 }, false, now, 5000),
    { nextCheck: now + 5000, kickRetryMs: 16_000 },
    'never later than the interval',
  );
});

test('only a proxy that cannot be reached is marked down; a rejection or another error keeps it available', (t) => {
  t.true(marksProxyDown('UNAVAILABLE'));
  t.false(marksProxyDown('FAILED_PRECONDITION'));
  t.false(marksProxyDown(undefined));
});

test('no proxy took the range: UNAVAILABLE naming each proxy error, or waiting for a heartbeat when none was tried', (t) => {
  const none = noProxyTook('vol', []);
  t.is(errorCode(none), 'UNAVAILABLE');
  t.regex(none.message, /no proxy is available for the logs of vol \(waiting for a heartbeat\)/);
  const both = noProxyTook('vol', ['a:1: STOPPED stopping', 'b:2: timeout']);
  t.is(errorCode(both), 'UNAVAILABLE');
  t.is(both.message, 'no proxy took the logs of vol: a:1: STOPPED stopping; b:2: timeout');
});

test('a full or hash backup the archive refuses fails with FAILED_PRECONDITION naming the reason', (t) => {
  const err = backupRefused('full', 'BAD_STATE', 'volume is Archived');
  t.is(errorCode(err), 'FAILED_PRECONDITION');
  t.is(err.message, 'the archive refused the full backup: BAD_STATE volume is Archived');
  const hash = backupRefused(
    'hash',
    'BAD_STATE',
    'volume is SyncReady, needs Archived (a full backup first)',
  );
  t.is(
    hash.message,
    'the archive refused the hash backup: BAD_STATE volume is SyncReady, needs Archived (a full backup first)',
  );
});

test('a log reset for a backup may start its gids above zero (a hash backup continues the archive)', (t) => {
  t.deepEqual(recordsAfterReset(1234, 43), { done: rec(0, 43, false, 1234), queue: [] });
});

test('InitVol needs a wdev no other volume uses and a free name, checked in that order', (t) => {
  const existing = [{ name: 'a', wdev: 'w0' }];
  t.is(errorCode(t.throws(() => checkInitVol('b', '', existing))), 'INVALID_ARGUMENT');
  const owned = t.throws(() => checkInitVol('a', 'w0', existing));
  t.is(errorCode(owned), 'FAILED_PRECONDITION');
  t.regex(owned.message, /wdev w0 belongs to volume a/);
  t.is(errorCode(t.throws(() => checkInitVol('a', 'w1', existing))), 'ALREADY_EXISTS');
  t.notThrows(() => checkInitVol('b', 'w1', existing));
});

test('a volume grows in SyncReady, Stopped, Target and Standby, never during a transition, and never shrinks', (t) => {
  for (const state of ['SyncReady', 'Stopped', 'Target', 'Standby'] as const)
    t.notThrows(() => checkResize('v', state, 1000, 2000), state);
  for (const state of [
    'Clear',
    'FullSync',
    'HashSync',
    'StartTarget',
    'StopTarget',
    'Reset',
    'StartStandby',
  ] as const) {
    const refused = t.throws(() => checkResize('v', state, 1000, 2000));
    t.is(errorCode(refused), 'FAILED_PRECONDITION', state);
    t.regex(refused.message, new RegExp(`volume v is ${state}, needs SyncReady, Stopped, Target, Standby`));
  }
  const shrink = t.throws(() => checkResize('v', 'Target', 1000, 999));
  t.is(errorCode(shrink), 'INVALID_ARGUMENT');
  t.regex(shrink.message, /holds 1000 LB, asked 999 LB: a volume can only grow/);
  t.notThrows(() => checkResize('v', 'Target', 1000, 1000), 'the same size again: nothing to do');
  t.notThrows(() => checkResize('v', 'Target', 1000, 0), "0: the data device's size, checked by walb-wdevd");
});
