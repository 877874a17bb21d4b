// The archive's decisions as pure functions of what it holds (docs/servers.md §6, §7.2-7.4, §7.7): its state table,
// the answer to a diff a proxy or a source archive offers (accept or the first typed rejection, in the documented
// order), whether a full backup may start and which path its bytes took, what a restore of a gid needs, whether a
// volume may grow, which diffs the start collects, and a replication's next step and its reaction to a refusal. No
// files, no processes: the server and the volume store act on the answers (test/unit/archive-policy.test.ts pins
// each one).
import { WalbError } from '../common/errors';
import {
  applySnap,
  canMerge,
  diff,
  isCleanSnap,
  mergeDiff,
  relation,
  snap,
  snapText,
  type DiffSet,
  type MetaDiff,
  type MetaSnap,
  type MetaState,
  type RestorableSnap,
} from '../common/meta';
import type { Edge, StopFlag } from '../common/state-machine';
import type { Rejection } from '../common/transfer';
import type { RejectReason } from '../generated/walb/v1/RejectReason';
import type { BulkOutcome } from '../native';

/** The states written to meta.json (docs/servers.md §6.2); Clear is the absence of the volume's directory. */
export type ArchiveSteadyState = 'SyncReady' | 'Archived' | 'Stopped';

export type ArchiveState =
  | 'Clear'
  | ArchiveSteadyState
  | 'InitVol'
  | 'ClearVol'
  | 'ResetVol'
  | 'FullSync'
  | 'HashSync'
  | 'Resync'
  | 'WdiffRecv'
  | 'ReplSyncAsServer'
  | 'Stop'
  | 'Start';

/** docs/servers.md §6.2 (the states built so far). */
export const ARCHIVE_EDGES: readonly Edge<ArchiveState>[] = [
  { from: 'Clear', via: 'InitVol', to: 'SyncReady' },
  { from: 'SyncReady', via: 'ClearVol', to: 'Clear' },
  { from: 'Stopped', via: 'ClearVol', to: 'Clear' },
  { from: 'SyncReady', via: 'FullSync', to: 'Archived' },
  { from: 'Archived', via: 'HashSync', to: 'Archived' },
  // A resync first drops an Archived volume's diffs and restored images (back to SyncReady, the base image kept),
  // then fixes the base image by hashes (docs/servers.md §7.7.1).
  { from: 'Archived', via: 'Resync', to: 'SyncReady' },
  { from: 'SyncReady', via: 'Resync', to: 'Archived' },
  { from: 'Archived', via: 'WdiffRecv', to: 'Archived' },
  { from: 'Archived', via: 'ReplSyncAsServer', to: 'Archived' },
  { from: 'Archived', via: 'Stop', to: 'Stopped' },
  { from: 'Stopped', via: 'Start', to: 'Archived' },
  { from: 'SyncReady', via: 'ResetVol', to: 'SyncReady' },
  { from: 'Stopped', via: 'ResetVol', to: 'SyncReady' },
];

/** Restore, the restorable list and Stop need one of these. */
export const ACTIVE_STATES: readonly ArchiveState[] = [
  'Archived',
  'HashSync',
  'WdiffRecv',
  'ReplSyncAsServer',
];

/** What the policy reads of a volume's stored data (the volume store provides it). */
export interface StoredVolume {
  readonly state: ArchiveSteadyState;
  /** Volume size [LB]. */
  readonly sizeLb: number;
  /** The storage log stream the archive follows. */
  readonly storageUuid: string;
  /** The archive's lineage: a replica's diffs must come from the same one. */
  readonly archiveUuid: string;
  /** Absent until a full backup completed. */
  readonly base: MetaState | undefined;
  readonly diffs: DiffSet;
}

/** A volume as the server sees it: its state machine's state and stop flag, and its store unless Clear. */
export interface VolumeFacts {
  readonly state: ArchiveState;
  readonly stop: StopFlag;
  readonly stored: StoredVolume | undefined;
}

/** The snapshot the archive can reach now: the base with every applicable diff applied (docs/servers.md §2.6). */
export function latestSnap(base: MetaState, diffs: DiffSet): MetaSnap {
  // While applying, the chain from B passes the applying end E (docs/servers.md §2.5).
  let s = base.snapB;
  for (const d of diffs.applicableChain(base.snapB)) s = applySnap(s, d);
  return s;
}

/** How a diff stands to what the archive holds, before its state is looked at. */
export type DiffVerdict = 'accept' | 'too-old-diff' | 'too-new-diff' | 'different-uuid' | 'archive-not-found';

/**
 * The diff checks of docs/servers.md §7.2 step 3, in order: base image, log stream (a replica's diff: the archive
 * lineage, docs/servers.md §7.7), then too old or too new.
 */
export function diffVerdict(
  v: StoredVolume,
  d: MetaDiff,
  uuid: string,
  lineage: 'storage' | 'archive' = 'storage',
): DiffVerdict {
  if (!v.base) return 'archive-not-found';
  if (uuid !== (lineage === 'storage' ? v.storageUuid : v.archiveUuid)) return 'different-uuid';
  const r = relation(latestSnap(v.base, v.diffs), d);
  return r === 'applicable' ? 'accept' : r === 'too-old' ? 'too-old-diff' : 'too-new-diff';
}

export interface WdiffOffer {
  volume: string;
  /** The volume size the proxy announces [LB]. */
  size: number;
  storageUuid: string;
  d: MetaDiff;
  /** A diff step of a replication: the source archive's lineage (docs/servers.md §7.7). */
  replica?: { archiveUuid: string };
}

/**
 * The archive's answer to a wdiff header (docs/servers.md §7.2 step 3): the first rejection that applies, or
 * undefined to accept. The foreground limit, checked last, is the transfer's (serveTransfer).
 */
export function wdiffRejection(v: VolumeFacts | undefined, offer: WdiffOffer): Rejection | undefined {
  const stored = v?.stored;
  if (!v || !stored) return { reason: 'NOT_FOUND', message: `no volume ${offer.volume}` };
  const st = v.state;
  if (st === 'Stopped' || st === 'Start' || st === 'Stop' || v.stop !== 'not-stopping')
    return { reason: 'STOPPED', message: `volume ${offer.volume} is stopped` };
  if (st === 'FullSync' || st === 'HashSync' || st === 'Resync')
    return {
      reason: 'SYNCING',
      message: `volume ${offer.volume} is in a ${st === 'FullSync' ? 'full backup' : st === 'HashSync' ? 'hash backup' : 'resync'}`,
    };
  if (st === 'WdiffRecv' || st === 'ReplSyncAsServer')
    return { reason: 'BUSY', message: `volume ${offer.volume} receives another wdiff` };
  if (st !== 'Archived') return { reason: 'BAD_STATE', message: `volume ${offer.volume} is ${st}` };
  if (offer.size > stored.sizeLb)
    return {
      reason: 'SMALLER_SIZE',
      message: `volume ${offer.volume} holds ${stored.sizeLb} LB, the diff is for ${offer.size}`,
    };
  const verdict = offer.replica
    ? diffVerdict(stored, offer.d, offer.replica.archiveUuid, 'archive')
    : diffVerdict(stored, offer.d, offer.storageUuid);
  if (verdict === 'archive-not-found') return { reason: 'NOT_FOUND', message: 'no base image' };
  if (verdict === 'different-uuid')
    return {
      reason: 'DIFFERENT_UUID',
      message: offer.replica ? 'another archive lineage (replicate with --resync)' : 'another log stream',
    };
  const latest = () => `latest is ${snapText(latestSnap(stored.base!, stored.diffs))}`;
  if (verdict === 'too-old-diff') return { reason: 'TOO_OLD_DIFF', message: latest() };
  if (verdict === 'too-new-diff') return { reason: 'TOO_NEW_DIFF', message: latest() };
  return undefined;
}

/**
 * Whether a full backup may start (docs/servers.md §7.3 step 3): a typed rejection, or undefined to accept. A size
 * that cannot be right fails the stream (INVALID_ARGUMENT). The foreground limit is the transfer's.
 */
export function fullSyncRejection(
  v: VolumeFacts | undefined,
  header: { volume: string; size: number },
): Rejection | undefined {
  if (!v?.stored) return { reason: 'NOT_FOUND', message: `no volume ${header.volume}` };
  if (v.state !== 'SyncReady')
    return { reason: 'BAD_STATE', message: `volume ${header.volume} is ${v.state}, needs SyncReady` };
  if (header.size <= 0 || header.size % 512 !== 0)
    throw new WalbError('INVALID_ARGUMENT', `bad volume size ${header.size}`);
  return undefined;
}

/** The largest hash-backup chunk: a differing chunk becomes one wdiff record (docs/formats.md §7). */
export const MAX_HASH_CHUNK = 32 << 20;

/**
 * Whether a hash backup may start (docs/servers.md §7.6): only onto an Archived volume (a reset archive needs a
 * full backup), not stopping, not while an apply or a merge rewrites what it reads, at least as large as the storage's volume. A header that cannot be right fails
 * the stream (INVALID_ARGUMENT). The foreground limit is the transfer's.
 */
export function hashSyncRejection(
  v: VolumeFacts | undefined,
  header: { volume: string; size: number; chunkSize: number },
  actions: readonly string[] = [],
): Rejection | undefined {
  if (!v?.stored) return { reason: 'NOT_FOUND', message: `no volume ${header.volume}` };
  if (v.state === 'Stopped' || v.stop !== 'not-stopping')
    return { reason: 'STOPPED', message: `volume ${header.volume} is stopped` };
  if (v.state === 'WdiffRecv' || v.state === 'ReplSyncAsServer')
    return { reason: 'BUSY', message: `volume ${header.volume} receives a wdiff` };
  const busy = rewritingRejection(header.volume, actions);
  if (busy) return busy;
  if (v.state !== 'Archived' || !v.stored.base)
    return {
      reason: 'BAD_STATE',
      message: `volume ${header.volume} is ${v.state}, needs Archived (a full backup first)`,
    };
  checkHashHeader(header);
  if (header.size > v.stored.sizeLb)
    return {
      reason: 'SMALLER_SIZE',
      message: `volume ${header.volume} holds ${v.stored.sizeLb} LB, the storage has ${header.size}`,
    };
  return undefined;
}

/** An apply or a merge rewrites the image a comparison reads: BUSY while one runs. */
function rewritingRejection(volume: string, actions: readonly string[]): Rejection | undefined {
  const rewriting = actions.filter((a) => a === 'Apply' || a === 'Merge');
  if (rewriting.length)
    return { reason: 'BUSY', message: `volume ${volume} is busy (${rewriting.join(', ')})` };
  return undefined;
}

/** A comparison's size and chunk size (docs/formats.md §7); a header that cannot be right fails the stream. */
function checkHashHeader(header: { size: number; chunkSize: number }): void {
  if (
    header.size <= 0 ||
    header.chunkSize <= 0 ||
    header.chunkSize % 512 !== 0 ||
    header.chunkSize > MAX_HASH_CHUNK
  )
    throw new WalbError('INVALID_ARGUMENT', `bad size ${header.size} or chunk size ${header.chunkSize}`);
}

/** What a hash replication's header says (HashSyncHeader.replica and .diff). */
export interface HashReplicaOffer extends WdiffOffer {
  chunkSize: number;
  replica: { archiveUuid: string };
}

/**
 * Whether a hash replication from a source archive may start (docs/servers.md §7.7.2): its compared diff is
 * checked as a replica's diff (wdiffRejection against the archive lineage; a compared diff applies only to the
 * latest snapshot at its own B), then no apply or merge may rewrite the image the hashes read. A header that cannot
 * be right (chunk size, a diff that is not compared or does not end clean) fails the stream. The foreground limit is
 * the transfer's.
 */
export function hashReplicaRejection(
  v: VolumeFacts | undefined,
  actions: readonly string[],
  offer: HashReplicaOffer,
): Rejection | undefined {
  checkHashHeader(offer);
  if (!offer.d.isCompDiff || !isCleanSnap(offer.d.snapE))
    throw new WalbError('INVALID_ARGUMENT', 'a hash replication makes a compared diff to a clean snapshot');
  return wdiffRejection(v, offer) ?? rewritingRejection(offer.volume, actions);
}

/** What a resync's header says beside a hash backup's (HashSyncHeader.replica). */
export interface ResyncOffer {
  volume: string;
  /** The source's volume size [LB]: the destination's base image takes it. */
  size: number;
  chunkSize: number;
  archiveUuid: string;
  storageUuid: string;
  base: MetaState | undefined;
}

/**
 * Whether a resync from a source archive may start (docs/servers.md §7.7.1): onto a volume that is Archived or
 * SyncReady with a base image (a resync cut half-way), not stopping, with no restore, resize, apply or merge
 * running. A header that cannot be right fails the stream (INVALID_ARGUMENT). The foreground limit is the
 * transfer's.
 */
export function resyncRejection(
  v: VolumeFacts | undefined,
  actions: readonly string[],
  offer: ResyncOffer,
): Rejection | undefined {
  if (!v?.stored) return { reason: 'NOT_FOUND', message: `no volume ${offer.volume}` };
  if (v.state === 'Stopped' || v.stop !== 'not-stopping')
    return { reason: 'STOPPED', message: `volume ${offer.volume} is stopped` };
  if (v.state === 'WdiffRecv') return { reason: 'BUSY', message: `volume ${offer.volume} receives a wdiff` };
  if (v.state !== 'Archived' && !(v.state === 'SyncReady' && v.stored.base))
    return {
      reason: 'BAD_STATE',
      message: `volume ${offer.volume} is ${v.state}, needs Archived or SyncReady with a base image (else a full replication)`,
    };
  const busy = actions.filter((a) => ['Restore', 'Resize', 'Apply', 'Merge', 'Export'].includes(a));
  if (busy.length) return { reason: 'BUSY', message: `volume ${offer.volume} is busy (${busy.join(', ')})` };
  checkHashHeader(offer);
  if (!offer.archiveUuid || !offer.storageUuid || !offer.base)
    throw new WalbError(
      'INVALID_ARGUMENT',
      'a resync names the source archive uuid, storage uuid and base state',
    );
  return undefined;
}

/**
 * Which path the bytes of a full backup took, from the bytes the sender says went through the bulk port and what
 * the bulk receiver did for the token (docs/servers.md §7.4): 'stream' when the sender says 0 and the receiver
 * finished no stream (the fallback), 'bulk' when the receiver wrote exactly what was sent; anything else is
 * TRUNCATED.
 */
export function fullSyncBytesPath(
  sent: number,
  outcome: Omit<BulkOutcome, 'durable'> | undefined,
): 'bulk' | 'stream' {
  if (sent === 0 && outcome?.state !== 'done') return 'stream';
  if (outcome?.state !== 'done' || outcome.bytes !== sent)
    throw new WalbError(
      'TRUNCATED',
      `the bulk receiver wrote ${outcome?.bytes ?? 0} of ${sent} bytes (${outcome?.state ?? 'closed'}${outcome?.error ? `: ${outcome.error}` : ''})`,
    );
  return 'bulk';
}

/** The snapshots a volume can restore (docs/servers.md §2.6): none before the first full backup. */
export function restorableSnaps(v: StoredVolume, all: boolean): RestorableSnap[] {
  if (!v.base || v.state === 'SyncReady') return [];
  return v.diffs.restorable(v.base, all);
}

/**
 * Whether `Restore {gid}` may start (docs/servers.md §6.3): an active volume that is not stopping, a restorable
 * gid, not restored already. Throws the typed refusal; the foreground limit is checked by the caller.
 */
export function checkRestore(volume: string, v: VolumeFacts, gid: number, restored: readonly number[]): void {
  if (!ACTIVE_STATES.includes(v.state))
    throw new WalbError(
      'FAILED_PRECONDITION',
      `restore: volume ${volume} is ${v.state}, needs ${ACTIVE_STATES.join(' or ')}`,
    );
  if (v.stop !== 'not-stopping') throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is stopping`);
  if (!v.stored) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is Clear`);
  if (!restorableSnaps(v.stored, true).some((r) => r.gid === gid))
    throw new WalbError('INVALID_ARGUMENT', `gid ${gid} of ${volume} is not restorable`);
  if (restored.includes(gid))
    throw new WalbError('ALREADY_EXISTS', `gid ${gid} of ${volume} is restored already`);
}

/**
 * The diffs a restore of `gid` applies to the base image, in order (docs/servers.md §6.5): the applicable chain up
 * to gid, which must reach exactly the clean snapshot |gid|.
 */
export function restoreChain(volume: string, v: StoredVolume, gid: number): MetaDiff[] {
  const base = v.base;
  if (!base)
    throw new WalbError('FAILED_PRECONDITION', `volume ${volume} has no base image yet (full backup first)`);
  if (!restorableSnaps(v, true).some((r) => r.gid === gid))
    throw new WalbError('INVALID_ARGUMENT', `gid ${gid} of volume ${volume} is not restorable`);
  const chain = v.diffs.applicableChain(base.snapB, gid);
  let s: MetaSnap = base.snapB;
  for (const d of chain) s = applySnap(s, d);
  if (!isCleanSnap(s) || s.gidB !== gid)
    throw new WalbError('INVALID_ARGUMENT', `the chain reaches ${snapText(s)}, not |${gid}|`);
  return chain;
}

/**
 * Whether `Export {gid}` may start (docs/servers.md §6.10) and the diffs its reads need, in order: as a restore, an
 * active volume that is not stopping with gid restorable; no Apply (it rewrites the base image) or Merge (it
 * replaces diffs) running, and gid not exported already. Throws the typed refusal.
 */
export function exportChain(
  volume: string,
  v: VolumeFacts,
  actions: readonly string[],
  gid: number,
  exported: readonly number[],
): MetaDiff[] {
  const stored = checkActiveWithBase(volume, v, 'export');
  refuseBusy(volume, actions, ['Apply', 'Merge']);
  if (stored.base.snapE) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is applying`);
  if (exported.includes(gid))
    throw new WalbError('ALREADY_EXISTS', `gid ${gid} of ${volume} is exported already`);
  return restoreChain(volume, stored, gid);
}

/** The states in which a volume may grow, with a base image (docs/servers.md §6.3). */
export const RESIZE_STATES: readonly ArchiveState[] = ['SyncReady', 'Archived', 'Stopped'];

/**
 * Whether `Resize {sizeLb}` may run (docs/servers.md §6.3): a steady state of RESIZE_STATES with a base image, no
 * restore, replication, apply or other resize running, and never smaller than the stored size. Throws the typed refusal.
 */
export function checkResize(
  volume: string,
  v: VolumeFacts,
  actions: readonly string[],
  sizeLb: number,
): void {
  if (sizeLb <= 0) throw new WalbError('INVALID_ARGUMENT', `resize of ${volume}: a size is required`);
  if (!RESIZE_STATES.includes(v.state))
    throw new WalbError(
      'FAILED_PRECONDITION',
      `resize: volume ${volume} is ${v.state}, needs ${RESIZE_STATES.join(', ')}`,
    );
  if (!v.stored?.base)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `volume ${volume} has no base image yet: the full backup sets its size`,
    );
  refuseBusy(volume, actions, ['Restore', 'ReplSyncAsClient', 'Apply', 'Resize']);
  if (sizeLb < v.stored.sizeLb)
    throw new WalbError(
      'INVALID_ARGUMENT',
      `volume ${volume} holds ${v.stored.sizeLb} LB, asked ${sizeLb} LB: a volume can only grow`,
    );
}

/** A restore does not start while the base image grows or takes diffs (docs/servers.md §6.3). */
export function checkNotResizing(volume: string, actions: readonly string[]): void {
  if (actions.includes('Resize')) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is resizing`);
  if (actions.includes('Apply')) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is applying`);
}

/** Refuses when one of the `excluded` actions runs (docs/servers.md §6.2). */
function refuseBusy(volume: string, actions: readonly string[], excluded: readonly string[]): void {
  const busy = actions.filter((a) => excluded.includes(a));
  if (busy.length)
    throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is busy (${busy.join(', ')})`);
}

/** An active volume that is not stopping, with a base image (apply, merge, snapshot flags). */
function checkActiveWithBase(
  volume: string,
  v: VolumeFacts,
  what: string,
): StoredVolume & { base: MetaState } {
  if (!ACTIVE_STATES.includes(v.state))
    throw new WalbError(
      'FAILED_PRECONDITION',
      `${what}: volume ${volume} is ${v.state}, needs ${ACTIVE_STATES.join(' or ')}`,
    );
  if (v.stop !== 'not-stopping') throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is stopping`);
  if (!v.stored?.base)
    throw new WalbError('FAILED_PRECONDITION', `volume ${volume} has no base image yet (full backup first)`);
  return v.stored as StoredVolume & { base: MetaState };
}

/**
 * Whether `Apply {gid}` may start (docs/servers.md §6.3, §6.6, §6.10) and the diffs it writes into the base
 * image, in order: an active volume, none of Restore, ReplSyncAsClient, Apply, Merge, Resize running, no export of
 * the volume, and gid a restorable snapshot after the base (the chain reaches exactly |gid|). Throws the typed
 * refusal.
 */
export function applyChain(
  volume: string,
  v: VolumeFacts,
  actions: readonly string[],
  gid: number,
): MetaDiff[] {
  const stored = checkActiveWithBase(volume, v, 'apply');
  refuseBusy(volume, actions, ['Restore', 'ReplSyncAsClient', 'Apply', 'Merge', 'Resize', 'Export']);
  if (stored.base.snapE) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is applying already`);
  const chain = restoreChain(volume, stored, gid);
  if (!chain.length)
    throw new WalbError('INVALID_ARGUMENT', `gid ${gid} of ${volume} is the base already: nothing to apply`);
  return chain;
}

/** A run of the applicable chain and the one diff it merges into. */
export interface MergeRun {
  diffs: MetaDiff[];
  merged: MetaDiff;
}

/**
 * The applicable chain a merge may take its runs from: an active volume, not applying, no Apply, Merge, Resize, no
 * export of the volume.
 */
function chainToMerge(volume: string, v: VolumeFacts, actions: readonly string[]): MetaDiff[] {
  const stored = checkActiveWithBase(volume, v, 'merge');
  refuseBusy(volume, actions, ['Apply', 'Merge', 'Resize', 'Export']);
  if (stored.base.snapE) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is applying`);
  return stored.diffs.applicableChain(stored.base.snapB);
}

/**
 * Whether `Merge {gidB, gidE}` may start (docs/servers.md §6.3, §6.6, §6.10) and what it merges: an active
 * volume, not applying, none of Apply, Merge, Resize running, no export of the volume, and a run of at least two
 * diffs of the applicable chain from one starting exactly at gidB to one ending exactly at gidE, each after the
 * first mergeable (the snapshots between them implicit). Throws the typed refusal.
 */
export function mergeRun(
  volume: string,
  v: VolumeFacts,
  actions: readonly string[],
  gidB: number,
  gidE: number,
): MergeRun {
  const chain = chainToMerge(volume, v, actions);
  const first = chain.findIndex((d) => d.snapB.gidB === gidB);
  if (first < 0 || chain[first].isCompDiff)
    throw new WalbError('INVALID_ARGUMENT', `no diff of ${volume} that merges starts at gid ${gidB}`);
  const diffs = [chain[first]];
  let merged = chain[first];
  for (const d of chain.slice(first + 1)) {
    if (merged.snapE.gidB >= gidE || !canMerge(merged, d)) break;
    merged = mergeDiff(merged, d);
    diffs.push(d);
  }
  if (merged.snapE.gidB !== gidE)
    throw new WalbError(
      'INVALID_ARGUMENT',
      `the mergeable run of ${volume} from gid ${gidB} ends at gid ${merged.snapE.gidB}, not ${gidE} (an explicit snapshot between them?)`,
    );
  if (diffs.length < 2)
    throw new WalbError(
      'INVALID_ARGUMENT',
      `gids ${gidB}..${gidE} of ${volume} are one diff: nothing to merge`,
    );
  return { diffs, merged };
}

/**
 * The runs a merge by size merges (docs/servers.md §6.6, §6.8): the chain cut, from its oldest diff, wherever two
 * diffs do not merge (an explicit snapshot between them, a compared diff), wherever the merged diff would exceed
 * `maxBytes` (counted as the sum of its inputs' sizes), and at `keepGid`, a snapshot that stays the end of a diff
 * (one a secondary still needs); every piece of at least two diffs is a run.
 */
export function mergeRunsBySize(
  chain: readonly MetaDiff[],
  maxBytes: number,
  keepGid = Infinity,
): MergeRun[] {
  const runs: MergeRun[] = [];
  let i = 0;
  while (i < chain.length) {
    const diffs = [chain[i]];
    let merged = chain[i];
    for (const d of chain.slice(i + 1)) {
      if (!canMerge(merged, d) || merged.dataSize + d.dataSize > maxBytes || merged.snapE.gidB === keepGid)
        break;
      merged = mergeDiff(merged, d);
      diffs.push(d);
    }
    if (diffs.length >= 2) runs.push({ diffs, merged });
    i += diffs.length;
  }
  return runs;
}

/**
 * Whether `Merge {max_bytes}` may start (docs/servers.md §6.3, §6.6) and the runs it merges, oldest first: the
 * conditions of a merge by gids, a size above 0, and at least one run (mergeRunsBySize). Throws the typed refusal.
 */
export function mergeRunsOf(
  volume: string,
  v: VolumeFacts,
  actions: readonly string[],
  maxBytes: number,
): MergeRun[] {
  if (!(maxBytes > 0)) throw new WalbError('INVALID_ARGUMENT', 'merge by size: max bytes must be above 0');
  const runs = mergeRunsBySize(chainToMerge(volume, v, actions), maxBytes);
  if (!runs.length)
    throw new WalbError(
      'INVALID_ARGUMENT',
      `no two consecutive diffs of ${volume} merge within ${maxBytes} bytes: nothing to merge`,
    );
  return runs;
}

/**
 * Whether `DisableSnapshot`/`EnableSnapshot` may run (docs/servers.md §6.3, §6.7) and the diffs whose file names
 * change: an active volume, no Apply or Merge running, and for each gid the diffs that start at it (one at least);
 * only those whose flag differs from `mergeable` are returned.
 */
export function snapshotFlagDiffs(
  volume: string,
  v: VolumeFacts,
  actions: readonly string[],
  gids: readonly number[],
  mergeable: boolean,
): MetaDiff[] {
  const stored = checkActiveWithBase(volume, v, mergeable ? 'disable-snapshot' : 'enable-snapshot');
  refuseBusy(volume, actions, ['Apply', 'Merge']);
  if (!gids.length) throw new WalbError('INVALID_ARGUMENT', 'name at least one gid');
  const all = stored.diffs.all();
  const out: MetaDiff[] = [];
  for (const gid of gids) {
    const starting = all.filter((d) => d.snapB.gidB === gid && !d.isCompDiff);
    if (!starting.length) throw new WalbError('NOT_FOUND', `no diff of ${volume} starts at gid ${gid}`);
    out.push(...starting.filter((d) => d.isMergeable !== mergeable));
  }
  return out;
}

/** `GcDiff` runs on an Archived or Stopped volume with no action running (docs/servers.md §6.3). */
export function checkGcDiff(volume: string, v: VolumeFacts, actions: readonly string[]): void {
  if (v.state !== 'Archived' && v.state !== 'Stopped')
    throw new WalbError(
      'FAILED_PRECONDITION',
      `gc-diff: volume ${volume} is ${v.state}, needs Archived or Stopped`,
    );
  if (actions.length)
    throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is busy (${actions.join(', ')})`);
}

/** ClearVol refuses a volume with work running on it (docs/servers.md §6.3). */
export function checkClearVol(volume: string, actions: readonly string[]): void {
  if (actions.length) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is busy`);
}

/** DelRestored refuses while a restore runs (docs/servers.md §6.3). */
export function checkDelRestored(volume: string, actions: readonly string[]): void {
  if (actions.includes('Restore'))
    throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is restoring`);
}

/**
 * The diffs garbage collection deletes (docs/servers.md §6.4): off the applicable chain and either too old for
 * the base or with their whole gid range covered by a chain diff (a shorter duplicate of a re-sent range).
 */
export function diffsToCollect(base: MetaState | undefined, diffs: DiffSet): MetaDiff[] {
  if (!base) return [];
  const chain = diffs.applicableChain(base.snapB);
  const covered = (d: MetaDiff) =>
    chain.some((c) => c.snapB.gidB <= d.snapB.gidB && d.snapE.gidB <= c.snapE.gidB);
  return diffs
    .all()
    .filter((d) => !chain.includes(d) && (relation(base.snapB, d) === 'too-old' || covered(d)));
}

/** What makes a volume's stored metadata unusable (docs/servers.md §6.4): the start stops with CORRUPTION. */
export type MetaInconsistency = 'unknown-version' | 'no-base-state' | 'base-image-missing';

export function metaInconsistency(
  meta: { version: number; state: ArchiveSteadyState; base?: MetaState },
  baseImageExists: boolean,
): MetaInconsistency | undefined {
  if (meta.version !== 1) return 'unknown-version';
  if (meta.state !== 'SyncReady' && !meta.base) return 'no-base-state';
  if (meta.base && !baseImageExists) return 'base-image-missing';
  return undefined;
}

// ---- replication (docs/servers.md §7.7) ----

/**
 * Whether `Replicate` may start on the source (docs/servers.md §6.3): an active volume with a base image, not
 * stopping, and none of the actions it excludes (Restore, ReplSyncAsClient, Apply, Merge, Resize) running. Throws the typed
 * refusal; the foreground limit is checked by the caller.
 */
export function checkReplicate(volume: string, v: VolumeFacts, actions: readonly string[]): void {
  if (!ACTIVE_STATES.includes(v.state) || !v.stored?.base)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `replicate: volume ${volume} is ${v.state}${v.stored?.base ? '' : ' without a base image'}, needs ${ACTIVE_STATES.join(' or ')}`,
    );
  if (v.stop !== 'not-stopping') throw new WalbError('FAILED_PRECONDITION', `volume ${volume} is stopping`);
  refuseBusy(volume, actions, ['Restore', 'ReplSyncAsClient', 'Apply', 'Merge', 'Resize']);
}

/** What the source reads of the destination (its Status; `state` Clear when it has no such volume). */
export interface ReplicaFacts {
  state: string;
  archiveUuid: string;
  /** Absent before the first full replication. */
  latest: MetaSnap | undefined;
  /** Volume size [LB]: above 0 once a base image was (partly) written. */
  sizeLb: number;
}

export interface ReplicationOptions {
  /** Replicate until the destination's latest gid reaches this one. */
  targetGid: number;
  /** Asked for (the first step only: after a resync the lineages match). */
  resync: boolean;
  dontMerge: boolean;
  maxMergeBytes: number;
}

export type ReplicationStep =
  | { kind: 'done'; gid: number }
  | { kind: 'full' }
  | { kind: 'resync' }
  /** The compared diff `diff` from the destination's latest snapshot to the source's snapshot |diff.snapE.B|. */
  | { kind: 'hash'; diff: MetaDiff }
  /** `diffs` of the source's chain, sent as the one diff `merged` (one file verbatim when a single one). */
  | { kind: 'diff'; diffs: MetaDiff[]; merged: MetaDiff };

/**
 * The source's next step (docs/servers.md §7.7), from what it holds and the destination's facts: Clear is
 * NOT_FOUND (init-vol it first); SyncReady takes a full replication, or a resync when asked and it has a base
 * image; Archived takes a resync when asked, refuses another lineage unless asked (the message names --resync),
 * is done once its latest gid reaches the target, takes a hash replication when the source's base is past it (no
 * diff of the source starts early enough), else the next diffs of the source's chain from its latest snapshot.
 */
export function nextReplicationStep(
  volume: string,
  source: StoredVolume,
  dest: ReplicaFacts,
  opts: ReplicationOptions,
): ReplicationStep {
  if (dest.state === 'Clear')
    throw new WalbError('NOT_FOUND', `the destination has no volume ${volume}: init-vol it first`);
  if (dest.state === 'SyncReady')
    return opts.resync && dest.sizeLb > 0 ? { kind: 'resync' } : { kind: 'full' };
  if (dest.state !== 'Archived')
    throw new WalbError(
      'FAILED_PRECONDITION',
      `the destination's ${volume} is ${dest.state}, needs Archived`,
    );
  if (opts.resync) return { kind: 'resync' };
  if (dest.archiveUuid !== source.archiveUuid)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `the destination's ${volume} has another archive history: replicate with --resync to replace it`,
    );
  const latest = dest.latest!;
  if (latest.gidB >= opts.targetGid) return { kind: 'done', gid: latest.gidB };
  if (source.base && latest.gidB < source.base.snapB.gidB)
    return { kind: 'hash', diff: hashReplicaDiff(volume, source, latest) };
  return { kind: 'diff', ...replicaDiffs(volume, source.diffs, latest, opts) };
}

/**
 * The diff a hash replication makes (docs/servers.md §7.7.2): compared, from the destination's latest snapshot to
 * the source's oldest clean snapshot that can follow it (its base when clean), so that the diff steps after it
 * bring every later restorable snapshot of the source. Mergeable only when the latest is dirty, as a hash
 * backup's diff: a clean one stays restorable.
 */
function hashReplicaDiff(volume: string, source: StoredVolume, latest: MetaSnap): MetaDiff {
  const to = restorableSnaps(source, true).find((r) => r.gid > latest.gidB && r.gid >= latest.gidE);
  if (!to)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `the source has no clean snapshot of ${volume} after the destination's latest ${snapText(latest)} to compare with`,
    );
  return diff(latest, snap(to.gid), {
    isCompDiff: true,
    isMergeable: !isCleanSnap(latest),
    timestamp: to.timestamp,
  });
}

/**
 * The diffs of a diff step: the source's chain from the destination's latest snapshot, up to the target when it
 * reaches it exactly there; the first one alone with dontMerge, else the run that merges within maxMergeBytes (at
 * least one).
 */
function replicaDiffs(
  volume: string,
  diffs: DiffSet,
  latest: MetaSnap,
  opts: ReplicationOptions,
): { diffs: MetaDiff[]; merged: MetaDiff } {
  const upToTarget = diffs.applicableChain(latest, opts.targetGid);
  const chain = upToTarget.length ? upToTarget : diffs.applicableChain(latest).slice(0, 1);
  if (!chain.length)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `the source has no diff of ${volume} from the destination's latest ${snapText(latest)} toward gid ${opts.targetGid}`,
    );
  const out = [chain[0]];
  let merged = chain[0];
  if (opts.dontMerge) return { diffs: out, merged };
  let bytes = merged.dataSize;
  for (const d of chain.slice(1)) {
    if (!canMerge(merged, d) || bytes + d.dataSize > opts.maxMergeBytes) break;
    merged = mergeDiff(merged, d);
    bytes += d.dataSize;
    out.push(d);
  }
  return { diffs: out, merged };
}

/**
 * The gid a replication reaches when none is asked (docs/servers.md §7.7): the source's latest restorable snapshot,
 * else its latest snapshot's B.
 */
export function defaultReplicationTarget(source: StoredVolume): number {
  const restorable = restorableSnaps(source, true);
  if (restorable.length) return restorable[restorable.length - 1].gid;
  return source.base ? latestSnap(source.base, source.diffs).gidB : 0;
}

/**
 * Where a full replication starts on the destination (docs/servers.md §7.7): the persisted offset of an
 * interrupted one of the same archive uuid, base state and size, else 0.
 */
export function fullReplicationResume(
  saved: { archiveUuid: string; base: MetaState; sizeLb: number; offset: number } | undefined,
  replica: { archiveUuid: string; base: MetaState; sizeLb: number },
): number {
  if (!saved || saved.archiveUuid !== replica.archiveUuid || saved.sizeLb !== replica.sizeLb) return 0;
  const same = (a: MetaSnap | undefined, b: MetaSnap | undefined) =>
    a === b || (!!a && !!b && a.gidB === b.gidB && a.gidE === b.gidE);
  if (!same(saved.base.snapB, replica.base.snapB) || !same(saved.base.snapE, replica.base.snapE)) return 0;
  if (saved.base.timestamp !== replica.base.timestamp) return 0;
  return saved.offset <= replica.sizeLb * 512 ? saved.offset : 0;
}

/**
 * How the source reacts to a destination's refusal of a step (docs/servers.md §7.7): 'again' reads the
 * destination's facts again at once (it got ahead meanwhile), 'wait' retries after a pause (transient), 'fail'
 * ends the replication.
 */
export function reactToReplicaRejection(reason: RejectReason): 'again' | 'wait' | 'fail' {
  if (reason === 'TOO_OLD_DIFF') return 'again';
  if (reason === 'BUSY' || reason === 'SYNCING') return 'wait';
  return 'fail';
}

// ---- backups list and verification (docs/servers.md §6.9) ----

/** The last verification of a snapshot, as the volume store keeps it (verified.json). */
export interface Verification {
  gid: number;
  /** The archive lineage it was made in: a new full backup reuses gids for other contents. */
  archiveUuid: string;
  /** Unix milliseconds (UTC) when it ended. */
  timeMs: number;
  ok: boolean;
  /** When ok: the whole-image hash (hex). */
  hash?: string;
  /** When failed: the stable code and the message. */
  errorCode?: string;
  error?: string;
}

/** A restorable snapshot as ListBackups gives it: what a restore of it reads and its last verification. */
export interface StoredBackup {
  gid: number;
  timestamp: number;
  explicit: boolean;
  /** The wdiffs a restore applies on the base image (policy.restoreChain) and their bytes. */
  diffs: number;
  diffBytes: number;
  verification?: Verification;
}

/**
 * The restorable snapshots (all of them, implicit ones too) with the diffs a restore of each reads: the prefix of
 * the applicable chain that reaches it, which is what restoreChain picks for a gid on the chain. A verification
 * counts only when it is of this lineage.
 */
export function storedBackups(v: StoredVolume, verifications: readonly Verification[]): StoredBackup[] {
  if (!v.base) return [];
  const needs = new Map<number, { diffs: number; diffBytes: number }>();
  let s = v.base.snapB;
  let diffBytes = 0;
  if (isCleanSnap(s)) needs.set(s.gidB, { diffs: 0, diffBytes });
  v.diffs.applicableChain(s).forEach((d, i) => {
    s = applySnap(s, d);
    diffBytes += d.dataSize;
    if (isCleanSnap(s)) needs.set(s.gidB, { diffs: i + 1, diffBytes });
  });
  const ofLineage = verifications.filter((x) => x.archiveUuid === v.archiveUuid);
  return restorableSnaps(v, true).map((r) => ({
    gid: r.gid,
    timestamp: r.timestamp,
    explicit: r.isExplicit,
    ...needs.get(r.gid)!,
    verification: ofLineage.find((x) => x.gid === r.gid),
  }));
}

/**
 * Whether `Verify {gid}` may start (docs/servers.md §6.9): as a restore (an active volume, not stopping, a
 * restorable gid, no resize or apply running) except that the snapshot may be restored already. Throws the typed
 * refusal.
 */
export function checkVerify(volume: string, v: VolumeFacts, actions: readonly string[], gid: number): void {
  checkRestore(volume, v, gid, []);
  checkNotResizing(volume, actions);
}

/**
 * The verifications to keep after `latest`: it replaces the one of its gid; those of another lineage or of a gid
 * that is no longer restorable go.
 */
export function keptVerifications(
  kept: readonly Verification[],
  latest: Verification,
  restorable: readonly number[],
): Verification[] {
  return [
    ...kept.filter(
      (x) => x.gid !== latest.gid && x.archiveUuid === latest.archiveUuid && restorable.includes(x.gid),
    ),
    latest,
  ].sort((a, b) => a.gid - b.gid);
}

// ---- the maintenance worker (docs/servers.md §6.8) ----

/** What a secondary archive answered about a volume (Status), or why it did not. */
export type SecondaryFacts =
  | { address: string; state: string; archiveUuid: string; latestGid: number | undefined }
  | { address: string; error: string };

/**
 * The highest gid the worker may apply up to and the snapshot its merges keep (docs/servers.md §6.8): the lowest
 * latest gid of the secondaries that hold the volume in this archive's lineage, stopped ones too (Infinity when none
 * does), or why it waits: a secondary did not answer, so what it needs is unknown. A secondary without the volume
 * (Clear), without a base (SyncReady) or of another lineage needs no diff of this one (a full replication or a
 * resync brings it up).
 */
export function secondaryFloor(
  archiveUuid: string,
  secondaries: readonly SecondaryFacts[],
): { floor: number } | { wait: string } {
  let floor = Infinity;
  for (const s of secondaries) {
    if ('error' in s) return { wait: `secondary ${s.address} did not answer (${s.error})` };
    if (
      s.archiveUuid !== archiveUuid ||
      s.latestGid === undefined ||
      s.state === 'Clear' ||
      s.state === 'SyncReady'
    )
      continue;
    floor = Math.min(floor, s.latestGid);
  }
  return { floor };
}

export interface MaintenanceSettings {
  /** Snapshots younger than this stay restorable [s]. */
  keepPeriodSec: number;
  /** Merge when the chain has more diffs than this. */
  mergeDiffs: number;
  /** The largest merged diff [bytes]. */
  mergeMaxBytes: number;
}

export type MaintenanceDecision =
  | { kind: 'apply'; gid: number; chain: MetaDiff[] }
  | { kind: 'merge'; runs: MergeRun[] }
  | { kind: 'idle'; why: string };

/**
 * What the worker does for a volume now (docs/servers.md §6.8), given the time [Unix s] and the floor
 * (secondaryFloor): nothing unless it is active, not stopping, not applying and runs none of the actions an apply
 * excludes; else apply up to the newest restorable snapshot older than the keep period and not past the floor;
 * else, with more than `mergeDiffs` diffs on the chain, merge its runs by size, keeping the floor a diff's end;
 * else nothing.
 */
export function maintenanceDecision(
  v: VolumeFacts,
  actions: readonly string[],
  settings: MaintenanceSettings,
  nowSec: number,
  floor: number,
): MaintenanceDecision {
  if (!ACTIVE_STATES.includes(v.state) || v.stop !== 'not-stopping' || !v.stored?.base)
    return { kind: 'idle', why: `volume is ${v.state}${v.stop !== 'not-stopping' ? ', stopping' : ''}` };
  const busy = actions.filter((a) =>
    ['Restore', 'ReplSyncAsClient', 'Apply', 'Merge', 'Resize', 'Export'].includes(a),
  );
  if (busy.length) return { kind: 'idle', why: `busy (${busy.join(', ')})` };
  const { base, diffs } = v.stored;
  if (base.snapE) return { kind: 'idle', why: 'applying' };
  const due = restorableSnaps(v.stored, false).filter(
    (r) => r.gid > base.snapB.gidB && r.timestamp <= nowSec - settings.keepPeriodSec,
  );
  const target = due.filter((r) => r.gid <= floor).at(-1);
  if (target) return { kind: 'apply', gid: target.gid, chain: diffs.applicableChain(base.snapB, target.gid) };
  const held = due.length ? `, apply held at gid ${floor} by a secondary` : '';
  const chain = diffs.applicableChain(base.snapB);
  if (chain.length <= settings.mergeDiffs) return { kind: 'idle', why: `${chain.length} diff(s)${held}` };
  const runs = mergeRunsBySize(chain, settings.mergeMaxBytes, floor);
  if (!runs.length)
    return {
      kind: 'idle',
      why: `${chain.length} diff(s), no two merge within ${settings.mergeMaxBytes} bytes${held}`,
    };
  return { kind: 'merge', runs };
}
