// The snapshot/diff algebra (docs/servers.md §2, docs/formats.md §6), worked out by hand.
import test from 'ava';
import {
  DiffSet,
  applySnap,
  canMerge,
  diff,
  diffFileName,
  mergeDiff,
  nextGid,
  parseDiffFileName,
  relation,
  snap,
  snapText,
} from '../../src/common/meta';

const T = Date.UTC(2018, 9, 31, 12, 34, 56) / 1000; // 20181031123456

test('wdiff names are built as docs/formats.md §6 says and parse back to the same diff', (t) => {
  const clean = diff(snap(100), snap(101), { isMergeable: true, timestamp: T });
  t.is(diffFileName(clean), '20181031123456-M--100-101.wdiff');
  const dirty = diff(snap(5, 7), snap(9), { timestamp: T });
  t.is(diffFileName(dirty), '20181031123456----5-7-9-9.wdiff');
  const comp = diff(snap(3), snap(8), { isCompDiff: true, timestamp: T });
  t.is(diffFileName(comp), '20181031123456--C-3-8.wdiff');
  for (const d of [clean, dirty, comp])
    t.deepEqual(parseDiffFileName(diffFileName(d), 77), { ...d, dataSize: 77 });
});

test('names that are not wdiffs, or describe a diff that does not progress, are not parsed', (t) => {
  for (const name of [
    'tmpAbc123',
    '20181031123456-M--100-101.wdif',
    '20181031123456-X--100-101.wdiff',
    '2018103112345-M--100-101.wdiff',
    '20181331123456-M--100-101.wdiff', // month 13
    '20181031123456-M--101-100.wdiff', // B.B >= E.B
    '20181031123456-M--5-9-7-8.wdiff', // B.E > E.E
    '20181031123456-M--5-3-7-8.wdiff', // B > E inside a snapshot
    '20181031123456-M--1-2-3.wdiff', // three gids
  ])
    t.is(parseDiffFileName(name), undefined, name);
});

test('a diff is too new, applicable or too old for a snapshot by its B gids; a compared diff only at its exact B', (t) => {
  const d = diff(snap(10), snap(12));
  t.is(relation(snap(9), d), 'too-new');
  t.is(relation(snap(10), d), 'applicable');
  t.is(relation(snap(11), d), 'applicable');
  t.is(relation(snap(12), d), 'too-old');
  const c = diff(snap(10), snap(12), { isCompDiff: true });
  t.is(relation(snap(10), c), 'applicable');
  t.is(relation(snap(11), c), 'too-old');
  t.is(relation(snap(9), c), 'too-new');
  t.throws(() => applySnap(snap(12), d), { message: /too-old/ });
});

test('a dirty snapshot becomes clean once clean diffs reach its E; a dirty diff leads to its own E', (t) => {
  const full = snap(0, 5); // a full backup taken while writes went on: consistent only at gid 5
  t.is(snapText(applySnap(full, diff(snap(0), snap(3)))), '|3,5|');
  t.is(snapText(applySnap(snap(3, 5), diff(snap(3), snap(6)))), '|6|');
  t.is(snapText(applySnap(snap(4), diff(snap(4, 6), snap(8, 9)))), '|8,9|');
});

test('diffs merge when the later one is mergeable and overlaps or touches the earlier one; never compared diffs', (t) => {
  const d0 = diff(snap(10), snap(12), { isMergeable: false, timestamp: 1, dataSize: 5 });
  const d1 = diff(snap(12), snap(13), { isMergeable: true, timestamp: 2, dataSize: 7 });
  t.true(canMerge(d0, d1));
  const m = mergeDiff(d0, d1);
  t.is(snapText(m.snapB), '|10|');
  t.is(snapText(m.snapE), '|13|');
  t.false(m.isMergeable, 'keeps the first diff’s flag');
  t.is(m.timestamp, 2);
  t.is(m.dataSize, 12);
  t.false(canMerge(d0, { ...d1, isMergeable: false }), 'an explicit snapshot in between stops merging');
  t.false(canMerge(d0, diff(snap(13), snap(14), { isMergeable: true })), 'a gap');
  t.false(canMerge(d0, diff(snap(11), snap(12), { isMergeable: true })), 'no progress');
  t.false(canMerge(d0, { ...d1, isCompDiff: true }));
  t.true(canMerge(d0, diff(snap(11), snap(14), { isMergeable: true })), 'overlapping');
});

test('gids are reserved for every maxWlogSendPb of log between snapshots', (t) => {
  t.is(nextGid({ lsid: 1000, gid: 7 }, 1000, 256), 8, 'same lsid: next gid');
  t.is(nextGid({ lsid: 1000, gid: 7 }, 1255, 256), 8);
  t.is(nextGid({ lsid: 1000, gid: 7 }, 1256, 256), 9);
  t.is(nextGid({ lsid: 1000, gid: 7 }, 1000 + 256 * 10, 256), 18);
  t.throws(() => nextGid({ lsid: 1000, gid: 7 }, 999, 256));
});

test('the restorable list walks the furthest applicable diffs; explicit snapshots are the ones not merged away', (t) => {
  const set = new DiffSet([
    diff(snap(0), snap(1), { timestamp: 101 }),
    diff(snap(1), snap(2), { isMergeable: true, timestamp: 102 }),
    diff(snap(2), snap(3), { isMergeable: true, timestamp: 103 }),
    diff(snap(3), snap(4), { timestamp: 104 }),
    diff(snap(1), snap(3), { isMergeable: false, timestamp: 103 }), // a merged copy: further, preferred
    diff(snap(6), snap(7), { timestamp: 107 }), // unreachable: gap at 4-6
  ]);
  const chain = set.applicableChain(snap(0));
  t.deepEqual(
    chain.map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
    ['0-1', '1-3', '3-4'],
  );
  const all = set.restorable({ snapB: snap(0), timestamp: 100 }, true);
  t.deepEqual(
    all.map((r) => [r.gid, r.timestamp, r.isExplicit]),
    [
      [0, 100, true],
      [1, 101, true],
      [3, 103, true],
      [4, 104, true],
    ],
  );
  // A dirty base (full backup not complete yet) is restorable only from where it becomes clean.
  const dirty = new DiffSet([
    diff(snap(0), snap(1), { timestamp: 1 }),
    diff(snap(1), snap(2), { isMergeable: true, timestamp: 2 }),
    diff(snap(2), snap(3), { isMergeable: true, timestamp: 3 }),
  ]);
  t.deepEqual(
    dirty.restorable({ snapB: snap(0, 2), timestamp: 0 }, true).map((r) => [r.gid, r.isExplicit]),
    [
      [2, false],
      [3, true],
    ],
  );
  t.deepEqual(
    dirty.restorable({ snapB: snap(0, 2), timestamp: 0 }).map((r) => r.gid),
    [2, 3],
    'the oldest and the latest are always shown',
  );
});

test('while the base is being applied, nothing before the end of the minimum list is restorable', (t) => {
  const set = new DiffSet([
    diff(snap(0), snap(1), { timestamp: 1 }),
    diff(snap(1), snap(2), { timestamp: 2 }),
    diff(snap(2), snap(3), { timestamp: 3 }),
  ]);
  t.deepEqual(
    set.restorable({ snapB: snap(0), snapE: snap(2), timestamp: 0 }, true).map((r) => r.gid),
    [2, 3],
  );
  t.deepEqual(
    set.restorable({ snapB: snap(0), snapE: snap(9), timestamp: 0 }, true),
    [],
    'cannot reach the end',
  );
});

test('a run of mergeable diffs from a start merges into one diff, as the proxy sends it', (t) => {
  const set = new DiffSet([
    diff(snap(5), snap(6), { timestamp: 1, dataSize: 10 }),
    diff(snap(6), snap(7), { isMergeable: true, timestamp: 2, dataSize: 10 }),
    diff(snap(7), snap(8), { isMergeable: true, timestamp: 3, dataSize: 10 }),
    diff(snap(8), snap(9), { timestamp: 4, dataSize: 10 }),
  ]);
  const first = set.all()[0];
  const { diffs, merged } = set.mergeableRun(first);
  t.is(diffs.length, 3);
  t.is(diffFileName(merged), `${'19700101000003'}----5-8.wdiff`);
  t.is(merged.dataSize, 30);
  t.is(set.mergeableRun(first, 2).diffs.length, 2, 'bounded');
  t.throws(() => set.add(diff(snap(5), snap(6))), { message: /exists/ });
});
