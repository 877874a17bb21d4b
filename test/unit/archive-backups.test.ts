// The backups list and verification (docs/servers.md §6.9) in-process: what `walbc backups` shows of each
// restorable snapshot (src/archive/policy.ts storedBackups), which verifications are kept, when Verify may start, and
// the lines walbc prints (src/controller/backups.ts). No files, no processes.
import test from 'ava';
import {
  storedBackups,
  checkVerify,
  keptVerifications,
  type StoredVolume,
  type Verification,
  type VolumeFacts,
} from '../../src/archive/policy';
import { DiffSet, diff, snap, type MetaDiff, type MetaState } from '../../src/common/meta';
import { BACKUPS_HEADER, backupLine, backupRow, verifyLine } from '../../src/controller/backups';

const LINEAGE = 'cc'.repeat(16);
const OTHER_LINEAGE = 'dd'.repeat(16);

function stored(base: MetaState | undefined, diffs: MetaDiff[]): StoredVolume {
  return {
    state: base ? 'Archived' : 'SyncReady',
    sizeLb: 2048,
    storageUuid: 'aa'.repeat(16),
    archiveUuid: LINEAGE,
    base,
    diffs: new DiffSet(diffs),
  };
}

const facts = (s: StoredVolume, state: VolumeFacts['state'] = 'Archived'): VolumeFacts => ({
  state,
  stop: 'not-stopping',
  stored: s,
});

/** Base |0| at t=100; 0→1 (1000 B), 1→2 (2000 B, snapshot 1 implicit), 2→3 (4000 B). */
const volume = () =>
  stored({ snapB: snap(0), timestamp: 100 }, [
    diff(snap(0), snap(1), { timestamp: 101, dataSize: 1000 }),
    diff(snap(1), snap(2), { timestamp: 102, dataSize: 2000, isMergeable: true }),
    diff(snap(2), snap(3), { timestamp: 103, dataSize: 4000 }),
  ]);

const verified = (gid: number, o: Partial<Verification> = {}): Verification => ({
  gid,
  archiveUuid: LINEAGE,
  timeMs: 1_700_000_000_000 + gid,
  ok: true,
  hash: `${gid}`.repeat(32).slice(0, 32),
  ...o,
});

test('each restorable snapshot lists the wdiffs and bytes its restore reads, and whether it is explicit', (t) => {
  t.deepEqual(
    storedBackups(volume(), []).map(({ gid, timestamp, explicit, diffs, diffBytes }) => ({
      gid,
      timestamp,
      explicit,
      diffs,
      diffBytes,
    })),
    [
      { gid: 0, timestamp: 100, explicit: true, diffs: 0, diffBytes: 0 },
      { gid: 1, timestamp: 101, explicit: false, diffs: 1, diffBytes: 1000 },
      { gid: 2, timestamp: 102, explicit: true, diffs: 2, diffBytes: 3000 },
      { gid: 3, timestamp: 103, explicit: true, diffs: 3, diffBytes: 7000 },
    ],
  );
});

test('a merged diff counts once: the snapshots it covers are not restorable and the next one reads it alone', (t) => {
  const v = stored({ snapB: snap(0), timestamp: 100 }, [
    diff(snap(0), snap(2), { timestamp: 102, dataSize: 2500 }),
    diff(snap(2), snap(3), { timestamp: 103, dataSize: 10 }),
  ]);
  t.deepEqual(
    storedBackups(v, []).map((r) => [r.gid, r.diffs, r.diffBytes]),
    [
      [0, 0, 0],
      [2, 1, 2500],
      [3, 2, 2510],
    ],
  );
});

test('while an apply is unfinished nothing before its end is listed, and its end reads the whole applying list', (t) => {
  const v = stored({ snapB: snap(0), snapE: snap(2), timestamp: 100 }, [
    diff(snap(0), snap(1), { timestamp: 101, dataSize: 1000 }),
    diff(snap(1), snap(2), { timestamp: 102, dataSize: 2000 }),
    diff(snap(2), snap(3), { timestamp: 103, dataSize: 4000 }),
  ]);
  t.deepEqual(
    storedBackups(v, []).map((r) => [r.gid, r.diffs, r.diffBytes]),
    [
      [2, 2, 3000],
      [3, 3, 7000],
    ],
  );
});

test('a volume without a full backup has no backups', (t) => {
  t.deepEqual(storedBackups(stored(undefined, []), []), []);
});

test('a snapshot shows its own verification, never one of another gid or of another archive lineage', (t) => {
  const rows = storedBackups(volume(), [
    verified(1),
    verified(2, { archiveUuid: OTHER_LINEAGE }),
    verified(3, { ok: false, hash: undefined, errorCode: 'CORRUPTION', error: 'bad' }),
  ]);
  t.deepEqual(rows[1].verification, verified(1));
  t.is(rows[2].verification, undefined, 'gid 2 of an older full backup is other data');
  t.is(rows[3].verification?.errorCode, 'CORRUPTION');
  t.is(rows[0].verification, undefined);
});

test('a new verification replaces the old one of its gid and drops those of gone snapshots and lineages', (t) => {
  const latest = verified(2, { timeMs: 5 });
  const kept = keptVerifications(
    [verified(3), verified(2), verified(1), verified(4, { archiveUuid: OTHER_LINEAGE })],
    latest,
    [2, 3],
  );
  t.deepEqual(kept, [latest, verified(3)]);
});

test('verify may run on a restored snapshot but, like a restore, not on one that is not restorable', (t) => {
  t.notThrows(() => checkVerify('v', facts(volume()), [], 2));
  const code = (fn: () => void) => {
    try {
      fn();
      return 'ok';
    } catch (e) {
      return (e as { code: string }).code;
    }
  };
  t.is(
    code(() => checkVerify('v', facts(volume()), [], 9)),
    'INVALID_ARGUMENT',
  );
  t.is(
    code(() => checkVerify('v', facts(volume(), 'Stopped'), [], 2)),
    'FAILED_PRECONDITION',
  );
  t.is(
    code(() => checkVerify('v', facts(volume()), ['Apply'], 2)),
    'FAILED_PRECONDITION',
    'apply rewrites the base',
  );
  t.is(
    code(() => checkVerify('v', facts(volume()), ['Resize'], 2)),
    'FAILED_PRECONDITION',
  );
  t.is(
    code(() => checkVerify('v', facts(volume()), ['Restore'], 2)),
    'ok',
    'restores and verifies run side by side',
  );
});

test('walbc backups prints one tab-separated line per snapshot with its kind, sizes and last verification', (t) => {
  const row = (verification?: object) =>
    backupRow({
      gid: 7,
      timestamp: 1700000000,
      explicit: false,
      diffs: 3,
      diffBytes: 12345,
      verification: verification as never,
    });
  t.is(BACKUPS_HEADER.split('\t').length, 6);
  t.is(backupLine(row()), '7\t2023-11-14T22:13:20\timplicit\t3\t12345\tnever');
  t.is(
    backupLine(row({ timeMs: 1700000060000, ok: true, hash: 'ab'.repeat(16), errorCode: '', error: '' })),
    `7\t2023-11-14T22:13:20\timplicit\t3\t12345\tok 2023-11-14T22:14:20 ${'ab'.repeat(16)}`,
  );
  const failed = row({
    timeMs: 1700000060000,
    ok: false,
    hash: '',
    errorCode: 'CORRUPTION',
    error: 'x.wdiff',
  });
  t.is(
    backupLine(failed),
    '7\t2023-11-14T22:13:20\timplicit\t3\t12345\tFAILED 2023-11-14T22:14:20 CORRUPTION: x.wdiff',
  );
  t.deepEqual(failed.verification, {
    ok: false,
    time: '2023-11-14T22:14:20.000Z',
    errorCode: 'CORRUPTION',
    error: 'x.wdiff',
  });
});

test("verify's line has walb-tool hash's shape: the hash, two spaces, what was hashed", (t) => {
  t.is(verifyLine('vol', 12, 'ab'.repeat(16)), `${'ab'.repeat(16)}  vol gid 12`);
});
