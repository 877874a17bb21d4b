// The decisions of walb-proxy (src/proxy/policy.ts), in-process: no server, no files.
import test from 'ava';
import { WalbError } from '../../src/common/errors';
import { diff, snap, type MetaDiff } from '../../src/common/meta';
import { VolumeState } from '../../src/common/state-machine';
import {
  FORWARDING_STATES,
  PROXY_EDGES,
  SEND_FAILURE_RETRY_MS,
  archiveEntry,
  checkArchiveInfo,
  checkRegistered,
  chooseWdiffsToSend,
  forwards,
  isTemporary,
  parseCompression,
  queuedGidRuns,
  reactToSend,
  stagedFileFate,
  wlogDiff,
  wlogRejection,
  type ProxyState,
  type SendOutcome,
} from '../../src/proxy/policy';

const MiB = 2 ** 20;
const noLimits = { maxFiles: 1000, maxBytes: 128 * MiB };
const oneStream = () => 'uuid-a';

/** A clean diff |b| → |e| of `size` bytes; mergeable unless an explicit snapshot is at its start. */
function d(b: number, e: number, size = 1, mergeable = true): MetaDiff {
  return diff(snap(b), snap(e), { isMergeable: mergeable, timestamp: e, dataSize: size });
}

const gids = (ds: readonly MetaDiff[]) => ds.map((x) => `${x.snapB.gidB}-${x.snapE.gidB}`);

// ---- volume states ----

test('wdiffs are forwarded in Started, WlogRecv and WaitForEmpty only', (t) => {
  const all: ProxyState[] = [
    'Clear',
    'Stopped',
    'Started',
    'Start',
    'Stop',
    'ClearVol',
    'ArchiveInfo',
    'WlogRecv',
  ];
  for (const s of [...all, 'WaitForEmpty' as const])
    t.is(forwards(s), ['Started', 'WlogRecv', 'WaitForEmpty'].includes(s), s);
  t.deepEqual([...FORWARDING_STATES].sort(), ['Started', 'WaitForEmpty', 'WlogRecv']);
});

test('a volume is created by a registration, started from Stopped, and receives wlogs only when Started', async (t) => {
  const v = new VolumeState<ProxyState>('vol', PROXY_EDGES, 'Clear');
  await t.throwsAsync(
    v.transact('Start', async () => undefined),
    { code: 'FAILED_PRECONDITION' },
  );
  await v.transact('ArchiveInfo', async () => undefined);
  t.is(v.state, 'Stopped');
  await t.throwsAsync(
    v.transact('WlogRecv', async () => undefined),
    { code: 'FAILED_PRECONDITION' },
  );
  await v.transact('Start', async () => undefined);
  t.is(v.state, 'Started');
  await t.throwsAsync(
    v.transact('ArchiveInfo', async () => undefined),
    { code: 'FAILED_PRECONDITION' },
  );
  await t.throwsAsync(
    v.transact('ClearVol', async () => undefined),
    { code: 'FAILED_PRECONDITION' },
  );
  await v.transact('WlogRecv', async () => undefined);
  t.is(v.state, 'Started');
  await v.transact('WaitForEmpty', async () => undefined);
  t.is(v.state, 'Stopped');
  await v.transact('ClearVol', async () => undefined);
  t.is(v.state, 'Clear');
});

// ---- archive registrations ----

test('compression is name[:level], snappy at level 0 when empty; an unknown name is INVALID_ARGUMENT', (t) => {
  t.deepEqual(parseCompression(''), { compression: 'snappy', level: 0 });
  t.deepEqual(parseCompression('zstd:3'), { compression: 'zstd', level: 3 });
  t.deepEqual(parseCompression('lzma'), { compression: 'lzma', level: 0 });
  t.deepEqual(parseCompression('gzip:x'), { compression: 'gzip', level: 0 });
  const err = t.throws(() => parseCompression('brotli'), { instanceOf: WalbError });
  t.is(err?.code, 'INVALID_ARGUMENT');
  t.regex(err?.message ?? '', /unknown compression 'brotli'/);
});

test('a registration needs a plain archive name, a HOST:PORT address and a known compression', (t) => {
  const ok = { name: 'a0', address: '127.0.0.1:10200', compression: '' };
  t.notThrows(() => checkArchiveInfo(ok));
  t.notThrows(() => checkArchiveInfo({ ...ok, name: 'A_b.c-9', address: 'host:1' }));
  for (const bad of [
    { ...ok, name: '' },
    { ...ok, name: 'a/b' },
    { ...ok, name: 'x'.repeat(65) },
    { ...ok, address: '127.0.0.1' },
    { ...ok, address: 'a b:1' },
    { ...ok, address: 'host:123456' },
    { ...ok, compression: 'rle' },
  ])
    t.throws(() => checkArchiveInfo(bad), { code: 'INVALID_ARGUMENT' }, JSON.stringify(bad));
});

test('an add of a registered archive is ALREADY_EXISTS; an update or delete of an unregistered one NOT_FOUND', (t) => {
  t.throws(() => checkRegistered('vol', 'a0', true, 'new'), { code: 'ALREADY_EXISTS', message: /a0.*vol/ });
  t.throws(() => checkRegistered('vol', 'a0', false, 'registered'), {
    code: 'NOT_FOUND',
    message: /a0.*vol/,
  });
  t.notThrows(() => checkRegistered('vol', 'a0', false, 'new'));
  t.notThrows(() => checkRegistered('vol', 'a0', true, 'registered'));
});

test('a registration is kept with snappy when it names no compression, and without its volume', (t) => {
  const req = { volume: 'vol', name: 'a0', address: 'h:1', compression: '', delaySec: 3 };
  t.deepEqual(archiveEntry(req), { name: 'a0', address: 'h:1', compression: 'snappy', delaySec: 3 });
  t.is(archiveEntry({ ...req, compression: 'zstd:1' }).compression, 'zstd:1');
});

// ---- wlogs offered by storages ----

test('a wlog for an unknown volume is rejected NOT_FOUND', (t) => {
  t.like(wlogRejection('vol', undefined), { reason: 'NOT_FOUND', message: 'no volume vol on this proxy' });
});

test('a wlog is taken only by a Started volume that is not stopping; otherwise STOPPED', (t) => {
  t.is(wlogRejection('vol', { state: 'Started', stop: 'not-stopping' }), undefined);
  for (const stop of ['stopping', 'force-stopping', 'waiting-for-empty'] as const)
    t.is(wlogRejection('vol', { state: 'Started', stop })?.reason, 'STOPPED', stop);
  for (const state of ['Stopped', 'Start', 'Stop', 'ArchiveInfo', 'WaitForEmpty'] as const)
    t.like(wlogRejection('vol', { state, stop: 'not-stopping' }), {
      reason: 'STOPPED',
      message: `volume vol is ${state}`,
    });
});

test('a second wlog while one is being received (WlogRecv) is rejected STOPPED', (t) => {
  t.is(wlogRejection('vol', { state: 'WlogRecv', stop: 'not-stopping' })?.reason, 'STOPPED');
});

test("a wlog's end must name a clean diff; its flag and timestamp are kept", (t) => {
  const end = {
    snapB: { gidB: 4, gidE: 4 },
    snapE: { gidB: 6, gidE: 6 },
    mergeable: true,
    compDiff: false,
    timestamp: 1234,
    dataSize: 0,
  };
  t.deepEqual(wlogDiff(end), diff(snap(4), snap(6), { isMergeable: true, timestamp: 1234 }));
  t.throws(() => wlogDiff(null), { code: 'INVALID_ARGUMENT', message: /no diff/ });
  t.throws(() => wlogDiff({ ...end, snapE: null }), { code: 'INVALID_ARGUMENT', message: /no diff/ });
  t.throws(() => wlogDiff({ ...end, snapB: { gidB: 4, gidE: 5 } }), {
    code: 'INVALID_ARGUMENT',
    message: /clean/,
  });
});

// ---- what to send ----

test('nothing queued: nothing to send', (t) => {
  t.is(chooseWdiffsToSend([], noLimits, oneStream), undefined);
});

test('the consecutive mergeable run from the lowest gid goes as one merged diff, whatever the queue order', (t) => {
  const c = chooseWdiffsToSend([d(2, 3, 30), d(0, 1, 10), d(1, 2, 20)], noLimits, oneStream)!;
  t.deepEqual(gids(c.diffs), ['0-1', '1-2', '2-3']);
  t.like(c.merged, { snapB: snap(0), snapE: snap(3), dataSize: 60, timestamp: 3 });
  t.is(c.uuid, 'uuid-a');
});

test('two queued diffs of the same gids (two log streams) go in separate transfers instead of failing the send', (t) => {
  const old = d(3, 4, 10);
  const fresh = { ...d(3, 4, 20), timestamp: 9 };
  const streamOf = (x: MetaDiff) => (x === old ? 'uuid-old' : 'uuid-new');
  const first = chooseWdiffsToSend([old, fresh, d(4, 5)], noLimits, streamOf)!;
  t.deepEqual(first.diffs, [old], 'the first of the range, alone: the next diff is of another stream');
  t.is(first.uuid, 'uuid-old');
  const second = chooseWdiffsToSend([fresh, d(4, 5)], noLimits, streamOf)!;
  t.deepEqual(gids(second.diffs), ['3-4', '4-5']);
  t.is(second.diffs[0], fresh);
});

test('an explicit snapshot ends the run: the diff after it goes in a transfer of its own', (t) => {
  const c = chooseWdiffsToSend([d(0, 1), d(1, 2, 1, false), d(2, 3)], noLimits, oneStream)!;
  t.deepEqual(gids(c.diffs), ['0-1']);
  t.deepEqual(c.merged, d(0, 1));
});

test('a gap in the gids ends the run', (t) => {
  t.deepEqual(gids(chooseWdiffsToSend([d(0, 1), d(2, 3)], noLimits, oneStream)!.diffs), ['0-1']);
});

test('the run stops at maxWdiffSendFiles files', (t) => {
  const queued = [d(0, 1), d(1, 2), d(2, 3), d(3, 4)];
  t.deepEqual(gids(chooseWdiffsToSend(queued, { ...noLimits, maxFiles: 2 }, oneStream)!.diffs), [
    '0-1',
    '1-2',
  ]);
});

test('the run stops before the diff that would pass maxWdiffSendMb, but the first goes even when larger', (t) => {
  const limits = { maxFiles: 1000, maxBytes: 100 };
  t.deepEqual(gids(chooseWdiffsToSend([d(0, 1, 60), d(1, 2, 40), d(2, 3, 1)], limits, oneStream)!.diffs), [
    '0-1',
    '1-2',
  ]);
  const big = chooseWdiffsToSend([d(0, 1, 500), d(1, 2, 1)], limits, oneStream)!;
  t.deepEqual(gids(big.diffs), ['0-1']);
  t.is(big.merged.dataSize, 500);
});

test('the run stops where the log stream (the uuid in the wdiff headers) changes', (t) => {
  const uuids = new Map([
    ['0-1', 'A'],
    ['1-2', 'A'],
    ['2-3', 'B'],
    ['3-4', 'B'],
  ]);
  const c = chooseWdiffsToSend([d(0, 1), d(1, 2), d(2, 3), d(3, 4)], noLimits, (x) =>
    uuids.get(gids([x])[0])!,
  )!;
  t.deepEqual(gids(c.diffs), ['0-1', '1-2']);
  t.is(c.uuid, 'A');
});

test('only the headers of the mergeable run are read, not the whole queue', (t) => {
  const asked: string[] = [];
  chooseWdiffsToSend([d(0, 1), d(1, 2), d(2, 3, 1, false), d(3, 4)], noLimits, (x) => {
    asked.push(...gids([x]));
    return 'A';
  });
  t.deepEqual(asked.sort(), ['0-1', '1-2']);
});

test('the queued gids as runs for Status: touching and overlapping diffs joined, a hole splits them, lowest first', (t) => {
  t.deepEqual(queuedGidRuns([]), []);
  t.deepEqual(queuedGidRuns([d(7, 9), d(2, 3), d(3, 5), d(4, 6)]), [
    { begin: 2, end: 6 },
    { begin: 7, end: 9 },
  ]);
  const dirty = diff(snap(10, 12), snap(11, 12), { isMergeable: true });
  t.deepEqual(
    queuedGidRuns([dirty, d(11, 13)]),
    [{ begin: 10, end: 13 }],
    'a dirty diff runs from gidB to gidB',
  );
});

// ---- after a send ----

const rejected = (reason: Extract<SendOutcome, { ok: false }>['reason']): SendOutcome => ({
  ok: false,
  reason,
});
const HOUR = 3600_000;
const TIMEOUT = 1800_000;

test('a sent wdiff leaves the queue and the next is sent at once', (t) => {
  t.deepEqual(reactToSend({ ok: true }, HOUR, TIMEOUT), { dropSent: true, next: 'send-next' });
});

test('TOO_OLD_DIFF and DIFFERENT_UUID: the wdiffs are useless to that archive, they go and the next is sent', (t) => {
  for (const reason of ['TOO_OLD_DIFF', 'DIFFERENT_UUID'] as const)
    t.deepEqual(reactToSend(rejected(reason), 0, TIMEOUT), { dropSent: true, next: 'send-next' }, reason);
});

test('SMALLER_SIZE and NOT_FOUND give up on the archive at once and keep the wdiffs', (t) => {
  for (const reason of ['SMALLER_SIZE', 'NOT_FOUND'] as const)
    t.deepEqual(reactToSend(rejected(reason), 0, TIMEOUT), { dropSent: false, next: 'give-up' }, reason);
});

test('TOO_NEW_DIFF and SYNCING back off and never give up, however long no wlog came', (t) => {
  for (const reason of ['TOO_NEW_DIFF', 'SYNCING'] as const)
    t.deepEqual(
      reactToSend(rejected(reason), 100 * HOUR, TIMEOUT),
      { dropSent: false, next: 'back-off' },
      reason,
    );
});

test('STOPPED, BUSY and BAD_STATE back off until no wlog came for retryTimeoutSec, then give up', (t) => {
  for (const reason of ['STOPPED', 'BUSY', 'BAD_STATE'] as const) {
    t.deepEqual(reactToSend(rejected(reason), 0, TIMEOUT), { dropSent: false, next: 'back-off' }, reason);
    t.is(reactToSend(rejected(reason), TIMEOUT, TIMEOUT).next, 'back-off', `${reason} at the timeout`);
    t.deepEqual(
      reactToSend(rejected(reason), TIMEOUT + 1, TIMEOUT),
      { dropSent: false, next: 'give-up' },
      reason,
    );
  }
});

test('a send that fails without a rejection is retried after 1 s', (t) => {
  t.is(SEND_FAILURE_RETRY_MS, 1000);
});

// ---- start of a volume ----

test('at a start, temporaries in received/ are deleted, staged wdiffs linked, other files left alone', (t) => {
  t.is(stagedFileFate('.tmp-0a1b2c3d4e5f.wlog'), 'delete');
  t.is(stagedFileFate('.tmp-0a1b2c3d4e5f.wdiff'), 'delete');
  t.is(stagedFileFate('20181031123456-M--100-101.wdiff'), 'link');
  t.is(stagedFileFate('notes.txt'), 'keep');
  t.true(isTemporary('.tmp-merge-0a1b2c.wdiff'));
  t.false(isTemporary('20181031123456-M--100-101.wdiff'));
});
