// The archive's decisions (src/archive/policy.ts, docs/servers.md §6, §7.2-7.4), in-process on hand-made volume
// facts: no files, no processes.
import test from 'ava';
import {
  ARCHIVE_EDGES,
  applyChain,
  checkClearVol,
  checkGcDiff,
  checkDelRestored,
  checkNotResizing,
  checkResize,
  checkReplicate,
  checkRestore,
  defaultReplicationTarget,
  diffVerdict,
  diffsToCollect,
  fullSyncBytesPath,
  fullReplicationResume,
  fullSyncRejection,
  hashReplicaRejection,
  hashSyncRejection,
  latestSnap,
  mergeRun,
  mergeRunsBySize,
  mergeRunsOf,
  maintenanceDecision,
  metaInconsistency,
  nextReplicationStep,
  reactToReplicaRejection,
  restorableSnaps,
  restoreChain,
  resyncRejection,
  secondaryFloor,
  snapshotFlagDiffs,
  wdiffRejection,
  type ArchiveState,
  type ReplicaFacts,
  type ArchiveSteadyState,
  type StoredVolume,
  type VolumeFacts,
} from '../../src/archive/policy';
import { DiffSet, diff, mergeDiff, snap, type MetaDiff, type MetaState } from '../../src/common/meta';
import { VolumeState, type StopFlag } from '../../src/common/state-machine';

const UUID = 'aa'.repeat(16);
const OTHER = 'bb'.repeat(16);
const LINEAGE = 'cc'.repeat(16);
const SIZE = 2048;

function stored(
  base: MetaState | undefined,
  diffs: MetaDiff[],
  state: ArchiveSteadyState = base ? 'Archived' : 'SyncReady',
): StoredVolume {
  return { state, sizeLb: SIZE, storageUuid: UUID, archiveUuid: LINEAGE, base, diffs: new DiffSet(diffs) };
}

function facts(
  state: ArchiveState,
  s: StoredVolume | undefined,
  stop: StopFlag = 'not-stopping',
): VolumeFacts {
  return { state, stop, stored: s };
}

/** An archived volume at |2|: base |0| and the diffs 0→1, 1→2. */
const archived = () =>
  stored({ snapB: snap(0), timestamp: 100 }, [diff(snap(0), snap(1)), diff(snap(1), snap(2))]);

const offer = (d: MetaDiff, o: { size?: number; storageUuid?: string } = {}) => ({
  volume: 'v',
  size: o.size ?? SIZE,
  storageUuid: o.storageUuid ?? UUID,
  d,
});

test('a wdiff offer gets the first rejection that applies, in the documented order, and the next diff is accepted', (t) => {
  const next = diff(snap(2), snap(3));
  const reason = (v: VolumeFacts | undefined, o = offer(next)) => wdiffRejection(v, o)?.reason;
  t.is(reason(undefined), 'NOT_FOUND', 'unknown volume');
  t.is(reason(facts('Clear', undefined)), 'NOT_FOUND', 'a volume being initialized has no store');
  for (const st of ['Stopped', 'Start', 'Stop'] as const) t.is(reason(facts(st, archived())), 'STOPPED', st);
  t.is(reason(facts('Archived', archived(), 'stopping')), 'STOPPED', 'the stop flag comes before the rest');
  t.is(reason(facts('FullSync', archived())), 'SYNCING');
  t.is(reason(facts('HashSync', archived())), 'SYNCING', 'a hash backup holds the chain still');
  t.is(reason(facts('Resync', archived())), 'SYNCING', 'a resync rewrites the base image');
  t.is(reason(facts('WdiffRecv', archived())), 'BUSY', 'another wdiff of the volume is arriving');
  t.is(reason(facts('SyncReady', stored(undefined, []))), 'BAD_STATE');
  // Everything wrong at once but the state: the size is looked at first, then the base, then the log stream.
  const wrong = offer(diff(snap(0), snap(1)), { size: SIZE + 1, storageUuid: OTHER });
  t.is(reason(facts('Archived', archived()), wrong), 'SMALLER_SIZE');
  t.is(reason(facts('Archived', stored(undefined, [], 'Archived')), { ...wrong, size: SIZE }), 'NOT_FOUND');
  t.is(reason(facts('Archived', archived()), { ...wrong, size: SIZE }), 'DIFFERENT_UUID');
  t.is(reason(facts('Archived', archived()), offer(diff(snap(1), snap(2)))), 'TOO_OLD_DIFF');
  const tooNew = wdiffRejection(facts('Archived', archived()), offer(diff(snap(3), snap(4))));
  t.deepEqual(tooNew, { reason: 'TOO_NEW_DIFF', message: 'latest is |2|' });
  t.is(wdiffRejection(facts('Archived', archived()), offer(next)), undefined);
  t.is(
    wdiffRejection(facts('Archived', archived()), offer(next, { size: SIZE - 8 })),
    undefined,
    'smaller is fine',
  );
});

test('the latest snapshot is the base with the applicable chain applied, and decides too old from too new', (t) => {
  const v = stored({ snapB: snap(0, 3), timestamp: 1 }, [
    diff(snap(0), snap(1)),
    diff(snap(1), snap(4)),
    diff(snap(6), snap(7)), // a gap: 4→6 has not arrived
  ]);
  t.deepEqual(latestSnap(v.base!, v.diffs), snap(4));
  t.is(diffVerdict(v, diff(snap(3), snap(4)), UUID), 'too-old-diff');
  t.is(diffVerdict(v, diff(snap(4), snap(6)), UUID), 'accept');
  t.is(diffVerdict(v, diff(snap(5), snap(6)), UUID), 'too-new-diff');
  t.is(diffVerdict(v, diff(snap(4), snap(6)), OTHER), 'different-uuid');
  t.is(diffVerdict(stored(undefined, []), diff(snap(0), snap(1)), UUID), 'archive-not-found');
  // A dirty base stays dirty until the chain reaches its E.
  t.deepEqual(
    latestSnap({ snapB: snap(0, 3), timestamp: 1 }, new DiffSet([diff(snap(0), snap(1))])),
    snap(1, 3),
  );
});

test('a full backup starts only onto a SyncReady volume; a size that cannot be right fails the stream', (t) => {
  const h = { volume: 'v', size: SIZE };
  t.is(fullSyncRejection(undefined, h)?.reason, 'NOT_FOUND');
  t.is(fullSyncRejection(facts('Clear', undefined), h)?.reason, 'NOT_FOUND');
  t.deepEqual(fullSyncRejection(facts('Archived', archived()), h), {
    reason: 'BAD_STATE',
    message: 'volume v is Archived, needs SyncReady',
  });
  t.is(fullSyncRejection(facts('Stopped', archived()), h)?.reason, 'BAD_STATE');
  t.is(fullSyncRejection(facts('SyncReady', stored(undefined, [])), h), undefined);
  for (const size of [0, 100])
    t.throws(() => fullSyncRejection(facts('SyncReady', stored(undefined, [])), { volume: 'v', size }), {
      code: 'INVALID_ARGUMENT',
      message: /bad volume size/,
    } as object);
});

test('a hash backup starts only onto an Archived volume with a base, as large as the storage; busy while a wdiff arrives', (t) => {
  const h = { volume: 'v', size: SIZE, chunkSize: 256 << 10 };
  t.is(hashSyncRejection(undefined, h)?.reason, 'NOT_FOUND');
  t.is(hashSyncRejection(facts('Clear', undefined), h)?.reason, 'NOT_FOUND');
  t.deepEqual(hashSyncRejection(facts('SyncReady', stored(undefined, [])), h), {
    reason: 'BAD_STATE',
    message: 'volume v is SyncReady, needs Archived (a full backup first)',
  });
  t.is(hashSyncRejection(facts('Stopped', archived()), h)?.reason, 'STOPPED');
  t.is(hashSyncRejection(facts('Archived', archived(), 'stopping'), h)?.reason, 'STOPPED');
  t.is(hashSyncRejection(facts('WdiffRecv', archived()), h)?.reason, 'BUSY');
  t.is(hashSyncRejection(facts('HashSync', archived()), h)?.reason, 'BAD_STATE');
  t.is(hashSyncRejection(facts('Archived', archived()), { ...h, size: SIZE + 8 })?.reason, 'SMALLER_SIZE');
  t.is(hashSyncRejection(facts('Archived', archived()), h), undefined);
  t.is(hashSyncRejection(facts('Archived', archived()), { ...h, size: SIZE - 8 }), undefined);
  for (const chunkSize of [0, 1000, (32 << 20) + 512])
    t.throws(() => hashSyncRejection(facts('Archived', archived()), { ...h, chunkSize }), {
      code: 'INVALID_ARGUMENT',
    } as object);
});

test('a resync from a source archive is refused unless the volume is Archived or SyncReady with a base image, idle and not stopping', (t) => {
  const r = {
    volume: 'v',
    size: SIZE,
    chunkSize: 65536,
    archiveUuid: OTHER,
    storageUuid: UUID,
    base: { snapB: snap(0, 5), timestamp: 100 },
  };
  const reason = (v: VolumeFacts | undefined, actions: string[] = []) =>
    resyncRejection(v, actions, r)?.reason;
  t.is(reason(undefined), 'NOT_FOUND');
  t.is(reason(facts('Clear', undefined)), 'NOT_FOUND');
  t.deepEqual(resyncRejection(facts('SyncReady', stored(undefined, [])), [], r), {
    reason: 'BAD_STATE',
    message: 'volume v is SyncReady, needs Archived or SyncReady with a base image (else a full replication)',
  });
  t.is(reason(facts('Stopped', archived())), 'STOPPED');
  t.is(reason(facts('Archived', archived(), 'stopping')), 'STOPPED');
  t.is(reason(facts('WdiffRecv', archived())), 'BUSY');
  for (const st of ['FullSync', 'HashSync', 'Resync'] as const)
    t.is(reason(facts(st, archived())), 'BAD_STATE', st);
  t.is(reason(facts('Archived', archived()), ['Restore']), 'BUSY', 'its restored images are about to go');
  t.is(reason(facts('Archived', archived()), ['Resize']), 'BUSY');
  t.is(reason(facts('Archived', archived())), undefined);
  t.is(
    reason(facts('SyncReady', stored({ snapB: snap(0), timestamp: 1 }, [], 'SyncReady'))),
    undefined,
    'a resync cut half-way is run again',
  );
  // Any size: the base image takes the source's, grown or cut.
  t.is(resyncRejection(facts('Archived', archived()), [], { ...r, size: SIZE * 2 }), undefined);
  t.is(resyncRejection(facts('Archived', archived()), [], { ...r, size: SIZE / 2 }), undefined);
  for (const chunkSize of [0, 1000, (32 << 20) + 512])
    t.throws(() => resyncRejection(facts('Archived', archived()), [], { ...r, chunkSize }), {
      code: 'INVALID_ARGUMENT',
    } as object);
  for (const bad of [{ archiveUuid: '' }, { storageUuid: '' }, { base: undefined }])
    t.throws(() => resyncRejection(facts('Archived', archived()), [], { ...r, ...bad }), {
      code: 'INVALID_ARGUMENT',
      message: 'a resync names the source archive uuid, storage uuid and base state',
    } as object);
});

test('full-backup bytes count as the bulk path only when the receiver wrote exactly what the sender counted', (t) => {
  t.is(fullSyncBytesPath(0, undefined), 'stream', 'no receiver stream: the fallback');
  t.is(fullSyncBytesPath(0, { state: 'waiting', bytes: 0 }), 'stream');
  t.is(fullSyncBytesPath(0, { state: 'done', bytes: 0 }), 'bulk', 'an all-zero device through the bulk port');
  t.is(fullSyncBytesPath(4096, { state: 'done', bytes: 4096 }), 'bulk');
  t.throws(() => fullSyncBytesPath(4096, { state: 'done', bytes: 2048 }), {
    code: 'TRUNCATED',
    message: 'the bulk receiver wrote 2048 of 4096 bytes (done)',
  } as object);
  t.throws(() => fullSyncBytesPath(4096, { state: 'failed', bytes: 512, error: 'disk full' }), {
    code: 'TRUNCATED',
    message: 'the bulk receiver wrote 512 of 4096 bytes (failed: disk full)',
  } as object);
  t.throws(() => fullSyncBytesPath(4096, undefined), {
    code: 'TRUNCATED',
    message: /0 of 4096 bytes \(closed\)/,
  } as object);
});

test('a restore needs an active volume that is not stopping, a restorable gid, not restored yet', (t) => {
  const refusal = (v: VolumeFacts, gid: number, restored: number[] = []) => {
    try {
      checkRestore('v', v, gid, restored);
      return undefined;
    } catch (err) {
      return (err as { code: string }).code;
    }
  };
  t.is(refusal(facts('Stopped', archived()), 2), 'FAILED_PRECONDITION');
  t.is(refusal(facts('SyncReady', stored(undefined, [])), 0), 'FAILED_PRECONDITION');
  t.is(refusal(facts('Archived', archived(), 'force-stopping'), 2), 'FAILED_PRECONDITION');
  t.is(refusal(facts('Archived', archived()), 3), 'INVALID_ARGUMENT', 'not reached yet');
  t.is(refusal(facts('Archived', archived()), 2, [2]), 'ALREADY_EXISTS');
  t.is(refusal(facts('Archived', archived()), 2, [0, 1]), undefined);
  t.is(
    refusal(facts('WdiffRecv', archived()), 1),
    undefined,
    'a wdiff arriving does not hold a restore back',
  );
});

test('a restore applies the chain from the base up to its gid; a gid before a dirty base is clean is refused', (t) => {
  const d01 = diff(snap(0), snap(1));
  const d12 = diff(snap(1), snap(2), { isMergeable: true });
  const d23 = diff(snap(2), snap(3));
  const v = stored({ snapB: snap(0, 2), timestamp: 1 }, [d01, d12, d23]);
  t.deepEqual(
    restorableSnaps(v, true).map((r) => r.gid),
    [2, 3],
  );
  t.deepEqual(restoreChain('v', v, 2), [d01, d12]);
  t.deepEqual(restoreChain('v', v, 3), [d01, d12, d23]);
  t.throws(() => restoreChain('v', v, 1), { code: 'INVALID_ARGUMENT', message: /not restorable/ } as object);
  t.throws(() => restoreChain('v', stored(undefined, [], 'Archived'), 0), {
    code: 'FAILED_PRECONDITION',
    message: /full backup first/,
  } as object);
});

test('nothing is restorable before the first full backup, nor while SyncReady', (t) => {
  t.deepEqual(restorableSnaps(stored(undefined, []), true), []);
  t.deepEqual(restorableSnaps(stored({ snapB: snap(0), timestamp: 1 }, [], 'SyncReady'), true), []);
  t.deepEqual(restorableSnaps(stored({ snapB: snap(0), timestamp: 1 }, [], 'Stopped'), true), [
    { gid: 0, timestamp: 1, isExplicit: true },
  ]);
});

test('garbage collection takes diffs too old for the base and shorter duplicates the chain covers, and keeps the rest', (t) => {
  const tooOld = diff(snap(3), snap(4));
  const d56 = diff(snap(5), snap(6));
  const d68 = diff(snap(6), snap(8));
  const shorter = diff(snap(6), snap(7)); // a re-sent range superseded by 6→8
  const ahead = diff(snap(9), snap(10)); // waits for 8→9
  const base = { snapB: snap(5), timestamp: 1 };
  const diffs = new DiffSet([tooOld, d56, d68, shorter, ahead]);
  t.deepEqual(diffsToCollect(base, diffs), [tooOld, shorter]);
  t.deepEqual(diffsToCollect(undefined, diffs), [], 'no base: nothing to measure against, nothing collected');
});

test('ClearVol refuses a volume with any action running; DelRestored only while a restore runs', (t) => {
  t.notThrows(() => checkClearVol('v', []));
  t.throws(() => checkClearVol('v', ['Restore']), { code: 'FAILED_PRECONDITION', message: /busy/ } as object);
  t.notThrows(() => checkDelRestored('v', []));
  t.throws(() => checkDelRestored('v', ['Restore']), {
    code: 'FAILED_PRECONDITION',
    message: /restoring/,
  } as object);
});

test('a volume grows with a base image in Archived or Stopped, not while restoring or resizing, and never shrinks', (t) => {
  const code = (f: VolumeFacts, size: number, actions: string[] = []) => {
    try {
      checkResize('v', f, actions, size);
      return undefined;
    } catch (err) {
      return (err as { code: string; message: string }).code;
    }
  };
  t.is(code(facts('Archived', archived()), SIZE * 2), undefined);
  t.is(code(facts('Stopped', { ...archived(), state: 'Stopped' }), SIZE * 2), undefined);
  t.is(code(facts('Archived', archived()), SIZE), undefined, 'the same size again: nothing to do');
  t.is(code(facts('SyncReady', stored(undefined, [])), SIZE * 2), 'FAILED_PRECONDITION', 'no base image yet');
  t.is(code(facts('WdiffRecv', archived()), SIZE * 2), 'FAILED_PRECONDITION', 'not during a transition');
  t.is(code(facts('FullSync', archived()), SIZE * 2), 'FAILED_PRECONDITION');
  t.is(code(facts('Archived', archived()), SIZE * 2, ['Restore']), 'FAILED_PRECONDITION');
  t.is(code(facts('Archived', archived()), SIZE * 2, ['Resize']), 'FAILED_PRECONDITION');
  t.is(code(facts('Archived', archived()), SIZE * 2, ['p0']), undefined, 'other actions do not matter');
  t.is(code(facts('Archived', archived()), 0), 'INVALID_ARGUMENT', 'an archive has no device to measure');
  t.throws(() => checkResize('v', facts('Archived', archived()), [], SIZE - 1), {
    code: 'INVALID_ARGUMENT',
    message: `volume v holds ${SIZE} LB, asked ${SIZE - 1} LB: a volume can only grow`,
  } as object);
  t.throws(() => checkResize('v', facts('Archived', archived()), ['Restore'], SIZE * 2), {
    message: /busy \(Restore\)/,
  } as object);
});

test('a restore waits for no resize', (t) => {
  t.notThrows(() => checkNotResizing('v', ['Restore', 'p0']));
  t.throws(() => checkNotResizing('v', ['Resize']), {
    code: 'FAILED_PRECONDITION',
    message: /resizing/,
  } as object);
});

test('stored metadata of an unknown version, an active state without a base, or a lost base image is unusable', (t) => {
  const base = { snapB: snap(0), timestamp: 1 };
  t.is(metaInconsistency({ version: 2, state: 'SyncReady' }, false), 'unknown-version');
  t.is(metaInconsistency({ version: 1, state: 'Archived' }, true), 'no-base-state');
  t.is(metaInconsistency({ version: 1, state: 'Stopped', base }, false), 'base-image-missing');
  t.is(metaInconsistency({ version: 1, state: 'SyncReady' }, false), undefined);
  t.is(metaInconsistency({ version: 1, state: 'Archived', base }, true), undefined);
});

test('the state table: a full backup only from SyncReady, wdiffs only onto Archived, Stop only from Archived', async (t) => {
  const at = (s: ArchiveState) => new VolumeState<ArchiveState>('v', ARCHIVE_EDGES, s);
  const allowed = async (from: ArchiveState, via: ArchiveState) => {
    const v = at(from);
    try {
      await v.transact(via, async () => undefined);
      return v.state;
    } catch {
      return undefined;
    }
  };
  t.is(await allowed('SyncReady', 'FullSync'), 'Archived');
  t.is(await allowed('Archived', 'FullSync'), undefined, 'a second full backup onto an archived volume');
  t.is(await allowed('Archived', 'WdiffRecv'), 'Archived');
  t.is(await allowed('Archived', 'ReplSyncAsServer'), 'Archived', "a replication's diff step");
  t.is(await allowed('SyncReady', 'ReplSyncAsServer'), undefined);
  t.is(await allowed('SyncReady', 'WdiffRecv'), undefined);
  t.is(await allowed('Archived', 'Stop'), 'Stopped');
  t.is(await allowed('Stopped', 'Start'), 'Archived');
  t.is(
    await allowed('Archived', 'ClearVol'),
    undefined,
    'an archived volume is stopped before it is cleared',
  );
  t.is(await allowed('Stopped', 'ResetVol'), 'SyncReady');
  t.is(await allowed('Clear', 'InitVol'), 'SyncReady');
  t.is(await allowed('SyncReady', 'Resync'), 'Archived', 'a resync ends Archived');
  t.is(await allowed('Stopped', 'Resync'), undefined);
});

test('a resync of an Archived volume first commits SyncReady (its diffs dropped), and only the fixed image commits Archived', async (t) => {
  const v = new VolumeState<ArchiveState>('v', ARCHIVE_EDGES, 'Archived');
  await v.transact('Resync', async () => undefined, 'SyncReady');
  t.is(v.state, 'SyncReady');
  await t.throwsAsync(
    v.transact('Resync', async () => {
      t.is(v.state, 'Resync');
      throw new Error('link cut');
    }),
  );
  t.is(v.state, 'SyncReady', 'a resync cut half-way stays SyncReady');
  await v.transact('Resync', async () => undefined);
  t.is(v.state, 'Archived');
});

// ---- replication (docs/servers.md §7.7) ----

const replica = (d: MetaDiff, archiveUuid = LINEAGE) => ({
  ...offer(d, { storageUuid: OTHER }),
  replica: { archiveUuid },
});

test("a replica's diff is checked against the archive lineage, not the log stream, and waits while another arrives", (t) => {
  const next = diff(snap(2), snap(3));
  t.is(
    wdiffRejection(facts('Archived', archived()), replica(next)),
    undefined,
    'another storage uuid is fine',
  );
  t.deepEqual(wdiffRejection(facts('Archived', archived()), replica(next, OTHER)), {
    reason: 'DIFFERENT_UUID',
    message: 'another archive lineage (replicate with --resync)',
  });
  t.is(
    wdiffRejection(facts('Archived', archived()), replica(diff(snap(1), snap(2))))?.reason,
    'TOO_OLD_DIFF',
  );
  t.is(wdiffRejection(facts('ReplSyncAsServer', archived()), offer(next))?.reason, 'BUSY', "a proxy's diff");
  t.is(wdiffRejection(facts('ReplSyncAsServer', archived()), replica(next))?.reason, 'BUSY');
  t.is(
    hashSyncRejection(facts('ReplSyncAsServer', archived()), { volume: 'v', size: SIZE, chunkSize: 512 })
      ?.reason,
    'BUSY',
  );
});

/** The source: base |0|, diffs 0→1 (100 B), 1→2 mergeable (100 B), 2→3 (explicit at 2), 3→4 mergeable. */
const source = () =>
  stored({ snapB: snap(0), timestamp: 100 }, [
    diff(snap(0), snap(1), { dataSize: 100 }),
    diff(snap(1), snap(2), { isMergeable: true, dataSize: 100 }),
    diff(snap(2), snap(3), { dataSize: 100 }),
    diff(snap(3), snap(4), { isMergeable: true, dataSize: 100 }),
  ]);
const dest = (state: string, latest?: number, o: Partial<ReplicaFacts> = {}): ReplicaFacts => ({
  state,
  archiveUuid: LINEAGE,
  latest: latest === undefined ? undefined : snap(latest),
  sizeLb: latest === undefined ? 0 : SIZE,
  ...o,
});
const opts = (
  o: Partial<{ targetGid: number; resync: boolean; dontMerge: boolean; maxMergeBytes: number }> = {},
) => ({
  targetGid: 4,
  resync: false,
  dontMerge: false,
  maxMergeBytes: 1 << 30,
  ...o,
});

test('the replication step: Clear is refused, SyncReady takes a full copy (a resync when asked and it has an image)', (t) => {
  t.throws(() => nextReplicationStep('v', source(), dest('Clear'), opts()), {
    code: 'NOT_FOUND',
    message: /init-vol it first/,
  } as object);
  t.deepEqual(nextReplicationStep('v', source(), dest('SyncReady'), opts()), { kind: 'full' });
  t.deepEqual(
    nextReplicationStep('v', source(), dest('SyncReady'), opts({ resync: true })),
    { kind: 'full' },
    'no image to fix',
  );
  t.deepEqual(
    nextReplicationStep(
      'v',
      source(),
      dest('SyncReady', undefined, { sizeLb: SIZE }),
      opts({ resync: true }),
    ),
    { kind: 'resync' },
  );
  t.throws(() => nextReplicationStep('v', source(), dest('Stopped', 1), opts()), {
    code: 'FAILED_PRECONDITION',
    message: /is Stopped, needs Archived/,
  } as object);
});

test('the replication step: another lineage is refused unless --resync; asked, an Archived destination is resynced', (t) => {
  t.throws(() => nextReplicationStep('v', source(), dest('Archived', 1, { archiveUuid: OTHER }), opts()), {
    code: 'FAILED_PRECONDITION',
    message: /--resync/,
  } as object);
  t.deepEqual(
    nextReplicationStep('v', source(), dest('Archived', 1, { archiveUuid: OTHER }), opts({ resync: true })),
    { kind: 'resync' },
  );
  t.deepEqual(nextReplicationStep('v', source(), dest('Archived', 4), opts({ resync: true })), {
    kind: 'resync',
  });
});

test('the replication step: done at the target; else the chain from the destination merged up to an explicit snapshot, the size limit or the target', (t) => {
  t.deepEqual(nextReplicationStep('v', source(), dest('Archived', 4), opts()), { kind: 'done', gid: 4 });
  t.deepEqual(nextReplicationStep('v', source(), dest('Archived', 2), opts({ targetGid: 2 })), {
    kind: 'done',
    gid: 2,
  });
  const step = (latest: number, o = opts()) => {
    const s = nextReplicationStep('v', source(), dest('Archived', latest), o);
    if (s.kind !== 'diff') throw new Error(`not a diff step: ${s.kind}`);
    return {
      gids: s.diffs.map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
      merged: `${s.merged.snapB.gidB}-${s.merged.snapE.gidB}`,
    };
  };
  t.deepEqual(step(0), { gids: ['0-1', '1-2'], merged: '0-2' }, 'the explicit snapshot |2| ends the run');
  t.deepEqual(step(2), { gids: ['2-3', '3-4'], merged: '2-4' });
  t.deepEqual(step(0, opts({ dontMerge: true })), { gids: ['0-1'], merged: '0-1' }, 'one file verbatim');
  t.deepEqual(
    step(0, opts({ maxMergeBytes: 150 })),
    { gids: ['0-1'], merged: '0-1' },
    'within the size limit',
  );
  t.deepEqual(
    step(2, opts({ targetGid: 3 })),
    { gids: ['2-3'], merged: '2-3' },
    'not merged past the target',
  );
  // The dirty base of a fresh full replication: the chain from |0,E| is the same.
  const dirty = nextReplicationStep('v', source(), { ...dest('Archived', 0), latest: snap(0, 2) }, opts());
  t.is(dirty.kind, 'diff');
});

test("the replication step: a gap in the source's chain is refused", (t) => {
  const gap = stored({ snapB: snap(0), timestamp: 1 }, [diff(snap(0), snap(1)), diff(snap(3), snap(4))]);
  t.throws(() => nextReplicationStep('v', gap, dest('Archived', 1), opts()), {
    code: 'FAILED_PRECONDITION',
    message: /no diff of v from the destination's latest \|1\|/,
  } as object);
});

/** A source that applied up to |5| (time 50), then diffs 5→6 (time 60) and 6→7 mergeable (time 70). */
const applied = () =>
  stored({ snapB: snap(5), timestamp: 50 }, [
    diff(snap(5), snap(6), { timestamp: 60 }),
    diff(snap(6), snap(7), { isMergeable: true, timestamp: 70 }),
  ]);

test("the replication step: a destination behind the source's base takes a hash step, a compared diff from its latest to the source's oldest clean snapshot", (t) => {
  const hashTo = (source: StoredVolume, latest: ReplicaFacts['latest'], o = opts({ targetGid: 7 })) => {
    const s = nextReplicationStep('v', source, { ...dest('Archived', 0), latest }, o);
    if (s.kind !== 'hash') throw new Error(`not a hash step: ${s.kind}`);
    return s.diff;
  };
  t.deepEqual(
    hashTo(applied(), snap(1)),
    diff(snap(1), snap(5), { isCompDiff: true, timestamp: 50 }),
    'to the clean base, with its time; a clean latest stays explicit (not mergeable)',
  );
  t.deepEqual(
    hashTo(applied(), snap(1, 3)),
    diff(snap(1, 3), snap(5), { isCompDiff: true, isMergeable: true, timestamp: 50 }),
    'from a dirty latest: mergeable',
  );
  t.deepEqual(
    hashTo(applied(), snap(1), opts({ targetGid: 3 })),
    diff(snap(1), snap(5), { isCompDiff: true, timestamp: 50 }),
    'a target before the base: the base is the nearest snapshot the source can give',
  );
  t.deepEqual(
    hashTo(applied(), snap(1, 6)),
    diff(snap(1, 6), snap(6), { isCompDiff: true, isMergeable: true, timestamp: 60 }),
    'a dirty latest needs a snapshot at or past its E',
  );
  // A dirty base turns clean at |8| only: the first snapshot to compare with.
  const dirtyBase = stored({ snapB: snap(5, 8), timestamp: 50 }, [
    diff(snap(5), snap(6), { timestamp: 60 }),
    diff(snap(6), snap(8), { timestamp: 80 }),
    diff(snap(8), snap(9), { timestamp: 90 }),
  ]);
  t.deepEqual(
    hashTo(dirtyBase, snap(1), opts({ targetGid: 9 })),
    diff(snap(1), snap(8), { isCompDiff: true, timestamp: 80 }),
  );
  t.throws(
    () =>
      nextReplicationStep('v', stored({ snapB: snap(5, 8), timestamp: 50 }, []), dest('Archived', 1), opts()),
    {
      code: 'FAILED_PRECONDITION',
      message: /no clean snapshot of v after the destination's latest \|1\|/,
    } as object,
  );

  // After the hash step the destination is at the base: diff steps go on; a target it holds is done.
  const next = nextReplicationStep('v', applied(), dest('Archived', 5), opts({ targetGid: 7 }));
  t.is(next.kind, 'diff');
  t.deepEqual(nextReplicationStep('v', applied(), dest('Archived', 1), opts({ targetGid: 1 })), {
    kind: 'done',
    gid: 1,
  });
  t.throws(
    () => nextReplicationStep('v', applied(), dest('Archived', 1, { archiveUuid: OTHER }), opts()),
    { code: 'FAILED_PRECONDITION', message: /--resync/ } as object,
    'another lineage is refused before any hash step',
  );
});

test('a hash replication is checked as a replica diff that must be compared and end clean; busy while an apply or a merge runs', (t) => {
  const hashOffer = (d: MetaDiff, o: { archiveUuid?: string; chunkSize?: number; size?: number } = {}) => ({
    ...offer(d, { storageUuid: OTHER, size: o.size }),
    chunkSize: o.chunkSize ?? 65536,
    replica: { archiveUuid: o.archiveUuid ?? LINEAGE },
  });
  const compared = (from: number, to: number) => diff(snap(from), snap(to), { isCompDiff: true });
  const v = facts('Archived', archived());
  t.is(hashReplicaRejection(v, [], hashOffer(compared(2, 5))), undefined, 'from the latest |2|');
  t.is(hashReplicaRejection(v, ['Restore'], hashOffer(compared(2, 5))), undefined, 'a restore only reads');
  t.is(hashReplicaRejection(v, [], hashOffer(compared(1, 5)))?.reason, 'TOO_OLD_DIFF', 'the latest moved on');
  t.is(hashReplicaRejection(v, [], hashOffer(compared(3, 5)))?.reason, 'TOO_NEW_DIFF');
  t.is(
    hashReplicaRejection(v, [], hashOffer(compared(2, 5), { archiveUuid: OTHER }))?.reason,
    'DIFFERENT_UUID',
  );
  t.is(hashReplicaRejection(v, [], hashOffer(compared(2, 5), { size: SIZE * 2 }))?.reason, 'SMALLER_SIZE');
  t.is(hashReplicaRejection(undefined, [], hashOffer(compared(2, 5)))?.reason, 'NOT_FOUND');
  t.is(
    hashReplicaRejection(facts('Archived', archived(), 'stopping'), [], hashOffer(compared(2, 5)))?.reason,
    'STOPPED',
  );
  t.is(hashReplicaRejection(facts('WdiffRecv', archived()), [], hashOffer(compared(2, 5)))?.reason, 'BUSY');
  t.is(hashReplicaRejection(facts('HashSync', archived()), [], hashOffer(compared(2, 5)))?.reason, 'SYNCING');
  for (const a of ['Apply', 'Merge'])
    t.deepEqual(hashReplicaRejection(v, [a], hashOffer(compared(2, 5))), {
      reason: 'BUSY',
      message: `volume v is busy (${a})`,
    });
  t.throws(() => hashReplicaRejection(v, [], hashOffer(diff(snap(2), snap(5)))), {
    code: 'INVALID_ARGUMENT',
  } as object);
  t.throws(() => hashReplicaRejection(v, [], hashOffer(diff(snap(2), snap(5, 6), { isCompDiff: true }))), {
    code: 'INVALID_ARGUMENT',
  } as object);
  t.throws(() => hashReplicaRejection(v, [], hashOffer(compared(2, 5), { chunkSize: 1000 })), {
    code: 'INVALID_ARGUMENT',
  } as object);
});

test("the default target is the source's latest restorable gid, else its latest snapshot's B", (t) => {
  t.is(defaultReplicationTarget(source()), 4);
  t.is(
    defaultReplicationTarget(stored({ snapB: snap(0, 7), timestamp: 1 }, [])),
    0,
    'a dirty base restores nothing',
  );
});

test('a full replication resumes only for the same lineage, base state and size, within the image', (t) => {
  const base = { snapB: snap(0, 7), timestamp: 5 };
  const r = { archiveUuid: LINEAGE, base, sizeLb: SIZE };
  const saved = { ...r, offset: 4096 };
  t.is(fullReplicationResume(saved, r), 4096);
  t.is(fullReplicationResume(undefined, r), 0, 'nothing interrupted');
  t.is(fullReplicationResume({ ...saved, archiveUuid: OTHER }, r), 0, 'another lineage');
  t.is(fullReplicationResume({ ...saved, base: { snapB: snap(0, 8), timestamp: 5 } }, r), 0, 'another base');
  t.is(fullReplicationResume({ ...saved, base: { ...base, timestamp: 6 } }, r), 0, 'another base time');
  t.is(fullReplicationResume({ ...saved, sizeLb: SIZE * 2 }, r), 0, 'another size');
  t.is(fullReplicationResume({ ...saved, offset: SIZE * 512 + 512 }, r), 0, 'past the image');
});

test('replicate needs an active source with a base, not stopping, without a restore, resize or another replication', (t) => {
  t.notThrows(() => checkReplicate('v', facts('Archived', archived()), []));
  t.notThrows(
    () => checkReplicate('v', facts('WdiffRecv', archived()), []),
    'wdiffs keep arriving meanwhile',
  );
  for (const busy of ['Restore', 'Resize', 'ReplSyncAsClient'])
    t.throws(() => checkReplicate('v', facts('Archived', archived()), [busy]), {
      code: 'FAILED_PRECONDITION',
      message: new RegExp(busy),
    } as object);
  t.throws(() => checkReplicate('v', facts('SyncReady', stored(undefined, [])), []), {
    code: 'FAILED_PRECONDITION',
  } as object);
  t.throws(() => checkReplicate('v', facts('Archived', archived(), 'stopping'), []), {
    code: 'FAILED_PRECONDITION',
    message: /stopping/,
  } as object);
  t.throws(
    () => checkResize('v', facts('Archived', archived()), ['ReplSyncAsClient'], SIZE * 2),
    {
      code: 'FAILED_PRECONDITION',
    } as object,
    'no resize while replicating',
  );
});

test('the source reads the destination again after TOO_OLD_DIFF, waits on BUSY or SYNCING, fails on the rest', (t) => {
  t.is(reactToReplicaRejection('TOO_OLD_DIFF'), 'again');
  t.is(reactToReplicaRejection('BUSY'), 'wait');
  t.is(reactToReplicaRejection('SYNCING'), 'wait');
  for (const r of [
    'TOO_NEW_DIFF',
    'DIFFERENT_UUID',
    'SMALLER_SIZE',
    'NOT_FOUND',
    'BAD_STATE',
    'STOPPED',
  ] as const)
    t.is(reactToReplicaRejection(r), 'fail', r);
});

// ---- apply, merge, gc-diff, snapshot flags (docs/servers.md §6.3, §6.6, §6.7) ----

/** Base |0|, then 0→1, 1→2 (mergeable: |1| is implicit), 2→3 and 3→4 (mergeable), the explicit |2| between. */
const maintained = () =>
  stored({ snapB: snap(0), timestamp: 100 }, [
    diff(snap(0), snap(1), { timestamp: 101 }),
    diff(snap(1), snap(2), { isMergeable: true, timestamp: 102 }),
    diff(snap(2), snap(3), { timestamp: 103 }),
    diff(snap(3), snap(4), { isMergeable: true, timestamp: 104 }),
  ]);

const codeOf = (fn: () => unknown) => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code: string }).code;
  }
};

test('apply writes the chain from the base up to the restorable gid, and nothing when gid is not a clean snapshot after the base', (t) => {
  const v = maintained();
  t.deepEqual(
    applyChain('v', facts('Archived', v), [], 3).map((d) => d.snapE.gidB),
    [1, 2, 3],
  );
  t.deepEqual(
    applyChain('v', facts('WdiffRecv', v), [], 1).map((d) => d.snapE.gidB),
    [1],
    'wdiffs keep arriving meanwhile',
  );
  t.is(
    codeOf(() => applyChain('v', facts('Archived', v), [], 0)),
    'INVALID_ARGUMENT',
    'the base already',
  );
  t.is(
    codeOf(() => applyChain('v', facts('Archived', v), [], 9)),
    'INVALID_ARGUMENT',
    'not restorable',
  );
  const dirtyEnd = stored({ snapB: snap(0), timestamp: 100 }, [
    diff(snap(0), snap(1, 3), { timestamp: 101 }),
  ]);
  t.is(
    codeOf(() => applyChain('v', facts('Archived', dirtyEnd), [], 1)),
    'INVALID_ARGUMENT',
    'a dirty end',
  );
});

test('apply refuses a volume that is not active, stopping, without a base, applying already, or running Restore, ReplSyncAsClient, Apply, Merge or Resize', (t) => {
  const v = maintained();
  t.is(
    codeOf(() => applyChain('v', facts('Stopped', { ...v, state: 'Stopped' }), [], 3)),
    'FAILED_PRECONDITION',
  );
  t.is(
    codeOf(() => applyChain('v', facts('SyncReady', stored(undefined, [])), [], 3)),
    'FAILED_PRECONDITION',
  );
  t.is(
    codeOf(() => applyChain('v', facts('Archived', v, 'stopping'), [], 3)),
    'FAILED_PRECONDITION',
  );
  for (const busy of ['Restore', 'ReplSyncAsClient', 'Apply', 'Merge', 'Resize'])
    t.throws(() => applyChain('v', facts('Archived', v), [busy], 3), {
      code: 'FAILED_PRECONDITION',
      message: new RegExp(`busy \\(${busy}\\)`),
    } as object);
  const applying = { ...v, base: { snapB: snap(0), snapE: snap(2), timestamp: 100 } };
  t.throws(() => applyChain('v', facts('Archived', applying), [], 3), {
    code: 'FAILED_PRECONDITION',
    message: /applying already/,
  } as object);
});

test('while an apply runs, the archive still reaches its latest snapshot and restores nothing before the applying end', (t) => {
  const v = maintained();
  const applying = { ...v, base: { snapB: snap(0), snapE: snap(2), timestamp: 100 } };
  t.deepEqual(latestSnap(applying.base, applying.diffs), snap(4));
  t.deepEqual(
    restorableSnaps(applying, true).map((r) => r.gid),
    [2, 3, 4],
  );
  t.deepEqual(
    restoreChain('v', applying, 3).map((d) => d.snapE.gidB),
    [1, 2, 3],
    'the whole list from the stored base B: the image is B with the applying list partly written',
  );
  t.is(diffVerdict(applying, diff(snap(4), snap(5)), UUID), 'accept');
});

test('restore, resize, replication, hash backup and resync wait for an apply; hash backup and resync also for a merge', (t) => {
  t.throws(() => checkNotResizing('v', ['Apply']), {
    code: 'FAILED_PRECONDITION',
    message: /applying/,
  } as object);
  t.notThrows(() => checkNotResizing('v', ['Merge']), 'a merge keeps every restorable snapshot');
  t.is(
    codeOf(() => checkResize('v', facts('Archived', archived()), ['Apply'], SIZE * 2)),
    'FAILED_PRECONDITION',
  );
  t.is(
    codeOf(() => checkResize('v', facts('Archived', archived()), ['Merge'], SIZE * 2)),
    undefined,
  );
  for (const busy of ['Apply', 'Merge'])
    t.is(
      codeOf(() => checkReplicate('v', facts('Archived', archived()), [busy])),
      'FAILED_PRECONDITION',
    );
  const h = { volume: 'v', size: SIZE, chunkSize: 1024 };
  for (const busy of ['Apply', 'Merge']) {
    t.is(hashSyncRejection(facts('Archived', archived()), h, [busy])?.reason, 'BUSY');
    t.is(
      resyncRejection(facts('Archived', archived()), [busy], {
        volume: 'v',
        size: SIZE,
        chunkSize: 1024,
        archiveUuid: OTHER,
        storageUuid: UUID,
        base: { snapB: snap(0), timestamp: 1 },
      })?.reason,
      'BUSY',
    );
  }
  t.is(hashSyncRejection(facts('Archived', archived()), h, ['Restore']), undefined);
});

test('merge takes the run of the chain from the diff at gidB to the one ending at gidE, each after the first mergeable', (t) => {
  const v = stored({ snapB: snap(0), timestamp: 100 }, [
    diff(snap(0), snap(1)),
    diff(snap(1), snap(2), { isMergeable: true }),
    diff(snap(2), snap(3), { isMergeable: true, timestamp: 7 }),
    diff(snap(3), snap(4)),
  ]);
  const run = mergeRun('v', facts('Archived', v), [], 0, 3);
  t.deepEqual(
    run.diffs.map((d) => d.snapE.gidB),
    [1, 2, 3],
  );
  t.deepEqual(run.merged, diff(snap(0), snap(3), { timestamp: 7 }));
  t.is(mergeRun('v', facts('Archived', v), [], 1, 3).diffs.length, 2);
  t.throws(() => mergeRun('v', facts('Archived', v), [], 0, 4), {
    code: 'INVALID_ARGUMENT',
    message: /ends at gid 3, not 4/,
  } as object);
  t.is(
    codeOf(() => mergeRun('v', facts('Archived', v), [], 3, 4)),
    'INVALID_ARGUMENT',
    'one diff',
  );
  t.is(
    codeOf(() => mergeRun('v', facts('Archived', v), [], 5, 6)),
    'INVALID_ARGUMENT',
    'no diff at gidB',
  );
  t.is(
    codeOf(() => mergeRun('v', facts('Archived', v), [], 0, 2)),
    undefined,
    'gidE inside the run',
  );
});

test('merge refuses while applying or running Apply, Merge or Resize, and not for a restore or a replication', (t) => {
  const v = maintained();
  for (const busy of ['Apply', 'Merge', 'Resize'])
    t.is(
      codeOf(() => mergeRun('v', facts('Archived', v), [busy], 0, 2)),
      'FAILED_PRECONDITION',
    );
  for (const other of ['Restore', 'ReplSyncAsClient'])
    t.is(
      codeOf(() => mergeRun('v', facts('Archived', v), [other], 0, 2)),
      undefined,
    );
  const applying = { ...v, base: { snapB: snap(0), snapE: snap(2), timestamp: 100 } };
  t.throws(() => mergeRun('v', facts('Archived', applying), [], 2, 4), {
    code: 'FAILED_PRECONDITION',
    message: /applying/,
  } as object);
});

test('after a merge crashed between writing its diff and deleting its inputs, the gc deletes the inputs and keeps the merged one', (t) => {
  const inputs = [
    diff(snap(0), snap(1)),
    diff(snap(1), snap(2), { isMergeable: true }),
    diff(snap(2), snap(3)),
  ];
  const merged = mergeDiff(inputs[0], inputs[1]);
  const diffs = new DiffSet([...inputs, merged]);
  const base = { snapB: snap(0), timestamp: 1 };
  t.deepEqual(
    diffsToCollect(base, diffs).map((d) => [d.snapB.gidB, d.snapE.gidB]),
    [
      [0, 1],
      [1, 2],
    ],
  );
  t.deepEqual(
    diffs.applicableChain(base.snapB).map((d) => [d.snapB.gidB, d.snapE.gidB]),
    [
      [0, 2],
      [2, 3],
    ],
  );
});

test('disabling a snapshot names the diffs starting at it that are not mergeable yet; enabling the reverse; a gid without a diff is NOT_FOUND', (t) => {
  const v = maintained();
  t.deepEqual(
    snapshotFlagDiffs('v', facts('Archived', v), [], [2, 1], true).map((d) => d.snapB.gidB),
    [2],
    '|1| is implicit already',
  );
  t.deepEqual(
    snapshotFlagDiffs('v', facts('Archived', v), [], [1, 3], false).map((d) => d.snapB.gidB),
    [1, 3],
  );
  t.is(
    codeOf(() => snapshotFlagDiffs('v', facts('Archived', v), [], [4], true)),
    'NOT_FOUND',
  );
  t.is(
    codeOf(() => snapshotFlagDiffs('v', facts('Archived', v), [], [], true)),
    'INVALID_ARGUMENT',
  );
  for (const busy of ['Apply', 'Merge'])
    t.is(
      codeOf(() => snapshotFlagDiffs('v', facts('Archived', v), [busy], [2], true)),
      'FAILED_PRECONDITION',
    );
  t.is(
    codeOf(() => snapshotFlagDiffs('v', facts('Archived', v), ['Restore'], [2], true)),
    undefined,
  );
  t.is(
    codeOf(() => snapshotFlagDiffs('v', facts('Stopped', { ...v, state: 'Stopped' }), [], [2], true)),
    'FAILED_PRECONDITION',
  );
});

test('a disabled snapshot leaves the restorable list and stays in the whole list as implicit', (t) => {
  const v = maintained();
  const disabled = stored(
    v.base,
    v.diffs.all().map((d) => (d.snapB.gidB === 2 ? { ...d, isMergeable: true } : d)),
  );
  t.deepEqual(
    restorableSnaps(v, false).map((r) => r.gid),
    [0, 2, 4],
  );
  t.deepEqual(
    restorableSnaps(disabled, false).map((r) => r.gid),
    [0, 4],
  );
  t.deepEqual(
    restorableSnaps(disabled, true).map((r) => [r.gid, r.isExplicit]),
    [
      [0, true],
      [1, false],
      [2, false],
      [3, false],
      [4, true],
    ],
  );
});

test('gc-diff runs on an Archived or Stopped volume with no action running', (t) => {
  t.notThrows(() => checkGcDiff('v', facts('Archived', archived()), []));
  t.notThrows(() => checkGcDiff('v', facts('Stopped', archived()), []));
  t.is(
    codeOf(() => checkGcDiff('v', facts('WdiffRecv', archived()), [])),
    'FAILED_PRECONDITION',
  );
  t.is(
    codeOf(() => checkGcDiff('v', facts('SyncReady', archived()), [])),
    'FAILED_PRECONDITION',
  );
  for (const busy of ['Restore', 'Apply', 'Merge', 'Resize', 'ReplSyncAsClient'])
    t.is(
      codeOf(() => checkGcDiff('v', facts('Archived', archived()), [busy])),
      'FAILED_PRECONDITION',
    );
});

/**
 * A chain |0|..|7| of 100-byte diffs (the last one 900): |1|, |2|, |3| and |5|, |6| implicit (mergeable), |4| explicit,
 * and the diff from |6| a compared one.
 */
function chainForSize(): MetaDiff[] {
  const sizes = [100, 100, 100, 100, 100, 100, 900];
  const mergeable = [false, true, true, true, false, true, true];
  return sizes.map((dataSize, g) =>
    diff(snap(g), snap(g + 1), {
      isMergeable: mergeable[g],
      isCompDiff: g === 6,
      dataSize,
      timestamp: g + 1,
    }),
  );
}

const runGids = (runs: { merged: MetaDiff; diffs: MetaDiff[] }[]) =>
  runs.map((r) => [r.merged.snapB.gidB, r.merged.snapE.gidB, r.diffs.length]);

test('merge by size cuts the chain at explicit snapshots and compared diffs, oldest runs first', (t) => {
  t.deepEqual(runGids(mergeRunsBySize(chainForSize(), 10_000)), [
    [0, 4, 4],
    [4, 6, 2],
  ]);
});

test('merge by size keeps each merged diff within the size, counted as the sum of its inputs', (t) => {
  t.deepEqual(
    runGids(mergeRunsBySize(chainForSize(), 250)),
    [
      [0, 2, 2],
      [2, 4, 2],
      [4, 6, 2],
    ],
    'three 100-byte diffs would be 300 bytes',
  );
  t.deepEqual(runGids(mergeRunsBySize(chainForSize(), 199)), [], 'no two diffs fit');
  const runs = mergeRunsBySize(chainForSize(), 300);
  t.true(runs.every((r) => r.merged.dataSize <= 300));
  t.deepEqual(runGids(runs), [
    [0, 3, 3],
    [4, 6, 2],
  ]);
});

test('merge by size never merges across the gid a secondary still needs', (t) => {
  t.deepEqual(runGids(mergeRunsBySize(chainForSize(), 10_000, 2)), [
    [0, 2, 2],
    [2, 4, 2],
    [4, 6, 2],
  ]);
  t.deepEqual(
    runGids(mergeRunsBySize(chainForSize(), 10_000, 1)),
    [
      [1, 4, 3],
      [4, 6, 2],
    ],
    'the diff ending at the kept gid stays alone',
  );
});

test('merge by size (Merge max_bytes) refuses a size of 0, a chain with nothing to merge, and what a merge by gids refuses', (t) => {
  const v = stored({ snapB: snap(0), timestamp: 1 }, chainForSize());
  t.deepEqual(runGids(mergeRunsOf('v', facts('Archived', v), [], 1 << 20)), [
    [0, 4, 4],
    [4, 6, 2],
  ]);
  t.is(
    codeOf(() => mergeRunsOf('v', facts('Archived', v), [], 0)),
    'INVALID_ARGUMENT',
  );
  t.throws(() => mergeRunsOf('v', facts('Archived', archived()), [], 1 << 20), {
    code: 'INVALID_ARGUMENT',
    message: /nothing to merge/,
  } as object);
  for (const busy of ['Apply', 'Merge', 'Resize'])
    t.is(
      codeOf(() => mergeRunsOf('v', facts('Archived', v), [busy], 1 << 20)),
      'FAILED_PRECONDITION',
    );
  const applying = { ...v, base: { snapB: snap(0), snapE: snap(2), timestamp: 1 } };
  t.is(
    codeOf(() => mergeRunsOf('v', facts('Archived', applying), [], 1 << 20)),
    'FAILED_PRECONDITION',
  );
  t.is(
    codeOf(() => mergeRunsOf('v', facts('SyncReady', v), [], 1 << 20)),
    'FAILED_PRECONDITION',
  );
});

test('the floor of the maintenance worker is the lowest latest gid of the secondaries of this lineage, stopped ones too', (t) => {
  const at = (address: string, latestGid: number | undefined, o: { state?: string; uuid?: string } = {}) => ({
    address,
    state: o.state ?? 'Archived',
    archiveUuid: o.uuid ?? LINEAGE,
    latestGid,
  });
  t.deepEqual(secondaryFloor(LINEAGE, []), { floor: Infinity }, 'no secondary holds anything');
  t.deepEqual(secondaryFloor(LINEAGE, [at('a1', 5), at('a2', 3)]), { floor: 3 });
  t.deepEqual(
    secondaryFloor(LINEAGE, [at('a1', 5), at('a2', 1, { uuid: OTHER })]),
    { floor: 5 },
    'another lineage needs a resync, not these diffs',
  );
  t.deepEqual(
    secondaryFloor(LINEAGE, [at('a1', undefined, { state: 'Clear' }), at('a2', 2, { state: 'SyncReady' })]),
    { floor: Infinity },
    'without the volume or a base, a full replication brings it up',
  );
  t.deepEqual(secondaryFloor(LINEAGE, [at('a1', 7, { state: 'WdiffRecv' })]), { floor: 7 }, 'receiving');
  t.deepEqual(
    secondaryFloor(LINEAGE, [at('a1', 4, { state: 'Stopped' }), at('a2', 6)]),
    { floor: 4 },
    'a stopped secondary takes the diffs it lacks once started',
  );
  const unknown = secondaryFloor(LINEAGE, [
    at('a1', 5),
    { address: '127.0.0.1:9', error: 'connection refused' },
  ]);
  t.true('wait' in unknown && /127\.0\.0\.1:9 did not answer/.test(unknown.wait), JSON.stringify(unknown));
});

/**
 * A volume at base |0| (time 100) with the chain |0|..|6|: |1| and |4| implicit; the snapshots |1|..|3| taken at
 * times 1000-1020, |4|..|6| at 2000-2020.
 */
function aging(): StoredVolume {
  const times = [1000, 1010, 1020, 2000, 2010, 2020];
  return stored(
    { snapB: snap(0), timestamp: 100 },
    times.map((timestamp, g) =>
      diff(snap(g), snap(g + 1), { isMergeable: g === 1 || g === 4, timestamp, dataSize: 100 }),
    ),
  );
}

const settings = { keepPeriodSec: 500, mergeDiffs: 100, mergeMaxBytes: 1 << 20 };

test('the worker applies up to the newest explicit snapshot older than the keep period', (t) => {
  const d = maintenanceDecision(facts('Archived', aging()), [], settings, 2100, Infinity);
  t.is(d.kind, 'apply');
  t.is(d.kind === 'apply' && d.gid, 3, '|1| is implicit, |4|.. are younger than 500 s');
  t.deepEqual(d.kind === 'apply' && d.chain.map((x) => x.snapE.gidB), [1, 2, 3]);
  t.is(
    maintenanceDecision(facts('Archived', aging()), [], settings, 1400, Infinity).kind,
    'idle',
    'everything is younger than the keep period',
  );
  const later = maintenanceDecision(facts('Archived', aging()), [], settings, 10_000, Infinity);
  t.is(later.kind === 'apply' && later.gid, 6, 'the latest snapshot too, once old enough');
});

test('the worker never applies past the latest gid a secondary still needs', (t) => {
  const d = maintenanceDecision(facts('Archived', aging()), [], settings, 2100, 2);
  t.is(d.kind === 'apply' && d.gid, 2);
  const held = maintenanceDecision(facts('Archived', aging()), [], settings, 2100, 1);
  t.is(held.kind, 'idle', '|1| is implicit: no explicit snapshot at or below the floor');
  t.regex(held.kind === 'idle' ? held.why : '', /apply held at gid 1 by a secondary/);
});

test('with more diffs than mergeDiffs and nothing to apply, the worker merges by size, keeping the floor a diff end', (t) => {
  const young = { ...settings, keepPeriodSec: 100_000, mergeDiffs: 5 };
  const d = maintenanceDecision(facts('Archived', aging()), [], young, 2100, Infinity);
  t.deepEqual(d.kind === 'merge' && runGids(d.runs), [
    [0, 2, 2],
    [3, 5, 2],
  ]);
  const floored = maintenanceDecision(facts('Archived', aging()), [], young, 2100, 1);
  t.deepEqual(floored.kind === 'merge' && runGids(floored.runs), [[3, 5, 2]], 'not across |1|');
  t.deepEqual(
    maintenanceDecision(facts('Archived', aging()), [], { ...young, mergeDiffs: 6 }, 2100, Infinity),
    { kind: 'idle', why: '6 diff(s)' },
    'six diffs are not more than six',
  );
  t.is(
    maintenanceDecision(facts('Archived', aging()), [], { ...young, mergeMaxBytes: 150 }, 2100, Infinity)
      .kind,
    'idle',
    'no two diffs fit the size',
  );
});

test('the worker does nothing on a volume that is not active, stopping, applying or running another task', (t) => {
  const idle = (v: VolumeFacts, actions: string[] = []) =>
    maintenanceDecision(v, actions, settings, 2100, Infinity).kind;
  t.is(idle(facts('WdiffRecv', aging())), 'apply', 'a wdiff arriving does not stop it');
  for (const st of ['Stopped', 'SyncReady', 'FullSync', 'Resync'] as const)
    t.is(idle(facts(st, aging())), 'idle', st);
  t.is(idle(facts('Archived', aging(), 'stopping')), 'idle');
  for (const busy of ['Restore', 'ReplSyncAsClient', 'Apply', 'Merge', 'Resize'])
    t.is(idle(facts('Archived', aging()), [busy]), 'idle', busy);
  const v = aging();
  t.is(idle(facts('Archived', { ...v, base: { snapB: snap(0), snapE: snap(2), timestamp: 100 } })), 'idle');
  t.is(idle(facts('Archived', stored(undefined, []))), 'idle', 'no base image');
});
