// The decisions of walb-proxy as pure functions of what it knows, so that each one is tested without processes or
// files (test/unit/proxy-policy.test.ts), following docs/servers.md §5.2, §5.3, §5.4, §7.1, §7.2 and §7.5: the
// volume states and which of them forward wdiffs, which archive registrations are valid, whether a wlog offered by
// a storage is taken and what diff its end names, which queued wdiffs go to an archive in one transfer, what a
// send's outcome means for the sent links and the send task, and what a volume's start recovers from the files a
// crash left.
import { WalbError } from '../common/errors';
import {
  diff,
  isCleanDiff,
  mergeDiff,
  parseDiffFileName,
  sameSnap,
  snap,
  DiffSet,
  type MetaDiff,
} from '../common/meta';
import type { Edge, StopFlag } from '../common/state-machine';
import type { Rejection } from '../common/transfer';
import type { MetaDiff__Output } from '../generated/walb/v1/MetaDiff';
import type { RejectReason } from '../generated/walb/v1/RejectReason';
import type { Compression } from '../native';

// ---- volume states (docs/servers.md §5.2) ----

export type ProxyState =
  | 'Clear'
  | 'Stopped'
  | 'Started'
  | 'Start'
  | 'Stop'
  | 'ClearVol'
  | 'ArchiveInfo'
  | 'WlogRecv'
  | 'WaitForEmpty';

export const PROXY_EDGES: readonly Edge<ProxyState>[] = [
  { from: 'Clear', via: 'ArchiveInfo', to: 'Stopped' },
  { from: 'Stopped', via: 'ArchiveInfo', to: 'Stopped' },
  { from: 'Stopped', via: 'ClearVol', to: 'Clear' },
  { from: 'Stopped', via: 'Start', to: 'Started' },
  { from: 'Started', via: 'Stop', to: 'Stopped' },
  { from: 'Started', via: 'WaitForEmpty', to: 'Stopped' },
  { from: 'Started', via: 'WlogRecv', to: 'Started' },
];

/** The states in which wdiffs are forwarded to the archives (and in which a stop may begin). */
export const FORWARDING_STATES: readonly ProxyState[] = ['Started', 'WlogRecv', 'WaitForEmpty'];

export function forwards(state: ProxyState): boolean {
  return FORWARDING_STATES.includes(state);
}

// ---- archive registrations (docs/servers.md §5.3) ----

export interface ArchiveInfoEntry {
  name: string;
  address: string;
  compression: string;
  delaySec: number;
}

const COMPRESSIONS: readonly Compression[] = ['snappy', 'none', 'zstd', 'lz4', 'gzip', 'lzma'];

/** A registration's compression text, `name[:level]` (snappy when empty), as the merge of wdiffs takes it. */
export function parseCompression(text: string): { compression: Compression; level: number } {
  const [name, level] = (text || 'snappy').split(':');
  if (!(COMPRESSIONS as readonly string[]).includes(name))
    throw new WalbError('INVALID_ARGUMENT', `unknown compression '${name}' (${COMPRESSIONS.join(', ')})`);
  return { compression: name as Compression, level: Number(level ?? 0) || 0 };
}

/** Checks an archive's name, address and compression (INVALID_ARGUMENT) before anything is registered. */
export function checkArchiveInfo(info: { name: string; address: string; compression: string }): void {
  if (!/^[0-9A-Za-z_.-]{1,64}$/.test(info.name))
    throw new WalbError('INVALID_ARGUMENT', `bad archive name '${info.name}'`);
  if (!/^[^\s:]+:\d{1,5}$/.test(info.address))
    throw new WalbError('INVALID_ARGUMENT', `bad address '${info.address}'`);
  parseCompression(info.compression);
}

/** An add needs a name not registered for the volume yet (ALREADY_EXISTS), an update or delete a registered one. */
export function checkRegistered(
  volume: string,
  archive: string,
  registered: boolean,
  want: 'new' | 'registered',
): void {
  if (registered && want === 'new')
    throw new WalbError('ALREADY_EXISTS', `archive ${archive} is registered for ${volume}`);
  if (!registered && want === 'registered')
    throw new WalbError('NOT_FOUND', `archive ${archive} is not registered for ${volume}`);
}

/** The entry kept for a registration: compression snappy when none is given. */
export function archiveEntry(info: ArchiveInfoEntry): ArchiveInfoEntry {
  return {
    name: info.name,
    address: info.address,
    compression: info.compression || 'snappy',
    delaySec: info.delaySec,
  };
}

// ---- wlogs offered by storages (docs/servers.md §7.1 step 6) ----

/** The typed rejection of a wlog's header, or undefined to take it (the foreground limit is checked after). */
export function wlogRejection(
  volume: string,
  found: { state: ProxyState; stop: StopFlag } | undefined,
): Rejection | undefined {
  if (!found) return { reason: 'NOT_FOUND', message: `no volume ${volume} on this proxy` };
  if (found.state !== 'Started' || found.stop !== 'not-stopping')
    return { reason: 'STOPPED', message: `volume ${volume} is ${found.state}` };
  return undefined;
}

/** The diff a wlog's end names; INVALID_ARGUMENT unless it is there and clean (a diff from logs always is). */
export function wlogDiff(end: MetaDiff__Output | null): MetaDiff {
  if (!end?.snapB || !end.snapE) throw new WalbError('INVALID_ARGUMENT', 'the wlog end carries no diff');
  const d = diff(snap(end.snapB.gidB, end.snapB.gidE), snap(end.snapE.gidB, end.snapE.gidE), {
    isMergeable: end.mergeable,
    timestamp: Number(end.timestamp),
  });
  if (!isCleanDiff(d)) throw new WalbError('INVALID_ARGUMENT', 'a diff from wlogs is clean');
  return d;
}

// ---- what to send to an archive (docs/servers.md §7.2 step 1) ----

export interface SendLimits {
  maxFiles: number;
  maxBytes: number;
}

export interface SendChoice {
  /** The queued diffs to send, in gid order: one file, or several to merge into one. */
  diffs: MetaDiff[];
  /** Their diff once merged. */
  merged: MetaDiff;
  /** The storage uuid of their log stream. */
  uuid: string;
}

/**
 * The queued diffs that go in the next transfer: the mergeable run from the lowest gid, at most `maxFiles` files
 * and `maxBytes` bytes (but always the first), all of the first one's log stream. `uuidOf` reads a wdiff's
 * header; it is asked only about the diffs of that run. Undefined when nothing is queued.
 */
export function chooseWdiffsToSend(
  queued: readonly MetaDiff[],
  limits: SendLimits,
  uuidOf: (d: MetaDiff) => string,
): SendChoice | undefined {
  if (queued.length === 0) return undefined;
  // Two log streams may have queued the same gids (a hash backup restarts the gids where the archive is, while
  // diffs of the old stream still wait): one diff of each range per transfer, the other in a later one.
  const set = new DiffSet(
    queued.filter(
      (q, i) => queued.findIndex((x) => sameSnap(x.snapB, q.snapB) && sameSnap(x.snapE, q.snapE)) === i,
    ),
  );
  const { diffs: run } = set.mergeableRun(set.all()[0], limits.maxFiles);
  const uuid = uuidOf(run[0]);
  const diffs = [run[0]];
  let bytes = run[0].dataSize;
  for (const d of run.slice(1)) {
    if (bytes + d.dataSize > limits.maxBytes || uuidOf(d) !== uuid) break;
    diffs.push(d);
    bytes += d.dataSize;
  }
  return { diffs, merged: diffs.slice(1).reduce((a, d) => mergeDiff(a, d), diffs[0]), uuid };
}

/** The gids [begin, end). */
export interface GidRun {
  begin: number;
  end: number;
}

/**
 * The gids a queue leads through, for Status (docs/servers.md §5.3): each diff covers [snapB.gidB, snapE.gidB),
 * and runs that touch or overlap are joined, lowest first. An archive at gid g can take a queued diff exactly when
 * g lies in a run, so this answers that for any g without listing every file.
 */
export function queuedGidRuns(queued: readonly MetaDiff[]): GidRun[] {
  const runs: GidRun[] = [];
  const byBegin = [...queued].sort((a, b) => a.snapB.gidB - b.snapB.gidB);
  for (const d of byBegin) {
    const last = runs.at(-1);
    if (last && d.snapB.gidB <= last.end) last.end = Math.max(last.end, d.snapE.gidB);
    else runs.push({ begin: d.snapB.gidB, end: d.snapE.gidB });
  }
  return runs;
}

// ---- after a send (docs/servers.md §7.2 step 5, §7.5) ----

export type SendOutcome = { ok: true } | { ok: false; reason: RejectReason };

export interface SendReaction {
  /** The sent links go: the archive has them, or can never use them. */
  dropSent: boolean;
  /** send-next: the task runs again at once; back-off: again after the archive's next retry delay; give-up:
   * the proxy stops sending there until a kick, a start or a new wlog. */
  next: 'send-next' | 'back-off' | 'give-up';
}

/**
 * What the proxy does after an archive answered a send. `quietMs` is how long no wlog has arrived for the volume;
 * rejections that may pass (but not too-new and syncing, which always pass) give up after `retryTimeoutMs` of it.
 */
export function reactToSend(outcome: SendOutcome, quietMs: number, retryTimeoutMs: number): SendReaction {
  if (outcome.ok) return { dropSent: true, next: 'send-next' };
  switch (outcome.reason) {
    case 'TOO_OLD_DIFF':
    case 'DIFFERENT_UUID':
      return { dropSent: true, next: 'send-next' };
    case 'SMALLER_SIZE':
    case 'NOT_FOUND':
      return { dropSent: false, next: 'give-up' };
    case 'TOO_NEW_DIFF':
    case 'SYNCING':
      return { dropSent: false, next: 'back-off' };
    default:
      return { dropSent: false, next: quietMs > retryTimeoutMs ? 'give-up' : 'back-off' };
  }
}

/** A send that failed without a rejection (the archive unreachable, a broken stream) runs again after this. */
export const SEND_FAILURE_RETRY_MS = 1000;

// ---- start of a volume (docs/servers.md §5.4) ----

/** Files under this prefix are being written; any left at a start come from a crash. */
export const TEMP_PREFIX = '.tmp-';

export function isTemporary(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

/**
 * What a start does with a file in `received/`: a temporary (a wlog whose transfer was cut, its wdiff being
 * written) is deleted; a wdiff under its final name was durable but maybe not linked everywhere, so it is linked
 * into every archive's queue; anything else stays.
 */
export function stagedFileFate(name: string): 'delete' | 'link' | 'keep' {
  if (isTemporary(name)) return 'delete';
  return parseDiffFileName(name) ? 'link' : 'keep';
}
