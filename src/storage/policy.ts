// The storage's decisions, as pure functions of its records and the wdev's lsids: the gid of a new snapshot record,
// the records after a reset and after an acknowledgement, when to take an implicit snapshot and which range of log
// to ship next and how much of it, how far to free the log (also in Standby), what Start does in each mode, which
// proxy to try and when to check one, how to react when a proxy or the archive refuses, and whether a volume may
// grow (docs/servers.md §2.7, §2.8, §7.1, §4.2, §4.3, §4.4, §7.5).
// The I/O that carries them out is in wlog-shipping.ts, full-backup.ts and proxy-monitor.ts.
import { WalbError } from '../common/errors';
import { nextGid, type LsidGid } from '../common/meta';
import type { RejectReason } from '../generated/walb/v1/RejectReason';
import type { StorageState } from './volumes';

/** The records of a volume: the done record and the snapshot records not shipped yet, oldest first. */
export interface Records {
  readonly done: LsidGid;
  readonly queue: readonly LsidGid[];
}

/** The wdev's log positions that the decisions read. */
export interface Lsids {
  oldest: number;
  prevWritten: number;
  permanent: number;
  latest: number;
}

/** The done record of a volume that never had a full backup. */
export const NO_DONE: LsidGid = { lsid: -1, gid: -1, isMergeable: false, timestamp: 0 };

/** How long the wlog task waits for logs to become permanent before it looks again. */
export const PERMANENT_WAIT_MS = 100;

/** `maxWlogSendMb` in physical blocks of the wdev: the most log per transfer and the gid reservation unit. */
export function maxSendPb(maxWlogSendMb: number, pbs: number): number {
  return Math.max(1, Math.floor((maxWlogSendMb * 2 ** 20) / pbs));
}

/** reset-wal restarts the log at lsid 0: done (0, 0) at `now`, nothing queued. */
export function recordsAfterReset(now: number, gid = 0): Records {
  return { done: { lsid: 0, gid, isMergeable: false, timestamp: now }, queue: [] };
}

/** A snapshot record at `lsid` after the newest record; an lsid behind it is taken as the newest one's. */
export function snapshotRecord(
  r: Records,
  lsid: number,
  isMergeable: boolean,
  maxPb: number,
  now: number,
): LsidGid {
  const prev = r.queue.at(-1) ?? r.done;
  const at = Math.max(lsid, prev.lsid);
  return { lsid: at, gid: nextGid(prev, at, maxPb), isMergeable, timestamp: now };
}

/**
 * The queue the wlog task works on: records at or below the done gid dropped, plus an implicit snapshot at
 * `latest` when nothing is queued but logs are, or when the newest record is `intervalSec` old and behind.
 */
export function pendingRecords(
  r: Records,
  latest: number,
  maxPb: number,
  intervalSec: number,
  now: number,
): LsidGid[] {
  const queue = r.queue.filter((q) => q.gid > r.done.gid);
  const newest = queue.at(-1);
  const implicit = newest
    ? now - newest.timestamp >= intervalSec && newest.lsid < latest
    : latest > r.done.lsid;
  return implicit ? [...queue, snapshotRecord({ done: r.done, queue }, latest, true, maxPb, now)] : queue;
}

/** One transfer of logs: from the done record up to `endLsid`, acknowledged as the diff |begin.gid| → |snapE|. */
export interface WlogRange {
  begin: LsidGid;
  /** The snapshot record the range reaches when whole. */
  end: LsidGid;
  /** The lsid the transfer stops at (or before, when capped: packs are never split). */
  endLsid: number;
  /** Up to the end record; else capped at maxSendPb, ending at the reserved gid begin.gid + 1. */
  whole: boolean;
  snapE: number;
}

export type RangeChoice =
  | { kind: 'nothing-queued' }
  | { kind: 'not-permanent'; delayMs: number }
  | { kind: 'send'; range: WlogRange };

/**
 * The next range to ship: the end record starts at the oldest queued one and, while it is implicit, extends to the
 * next one within maxPb of the done lsid and not past `permanent`. The whole range goes when it fits in maxPb or
 * ends at the very next gid; otherwise maxPb of it, ending at the reserved gid done.gid + 1.
 */
export function chooseRange(r: Records, permanent: number, maxPb: number): RangeChoice {
  const { done, queue } = r;
  if (queue.length === 0) return { kind: 'nothing-queued' };
  let end = queue[0];
  for (const q of queue.slice(1)) {
    if (!end.isMergeable || q.lsid - done.lsid > maxPb || q.lsid > permanent) break;
    end = q;
  }
  const whole = end.gid === done.gid + 1 || end.lsid - done.lsid <= maxPb;
  const endLsid = whole ? end.lsid : done.lsid + maxPb;
  if (permanent < endLsid) return { kind: 'not-permanent', delayMs: PERMANENT_WAIT_MS };
  return { kind: 'send', range: { begin: done, end, endLsid, whole, snapE: whole ? end.gid : done.gid + 1 } };
}

/** The diff a range's end message announces: always clean, mergeable as the done record it starts from. */
export function rangeDiff(range: WlogRange) {
  const { begin, end, snapE } = range;
  return {
    snapB: { gidB: begin.gid, gidE: begin.gid },
    snapE: { gidB: snapE, gidE: snapE },
    mergeable: begin.isMergeable,
    timestamp: end.timestamp,
  };
}

/**
 * The done record once a proxy acknowledged the range up to `reached`: the end record's flag and timestamp, or
 * when capped the reserved gid, mergeable, with the old timestamp.
 */
export function doneAfterAck(range: WlogRange, reached: number): LsidGid {
  const { begin, end, snapE } = range;
  return range.whole
    ? { lsid: reached, gid: snapE, isMergeable: end.isMergeable, timestamp: end.timestamp }
    : { lsid: reached, gid: snapE, isMergeable: true, timestamp: begin.timestamp };
}

/** Acknowledged records leave the queue. */
export function recordsAfterAck(r: Records, done: LsidGid): Records {
  return { done, queue: r.queue.filter((q) => q.gid > done.gid) };
}

/**
 * The log may be freed up to `bound` (the done record, or in Standby standbyFreeBound) but it is past what the wdev
 * wrote before its last checkpoint: checkpoint before freeing.
 */
export function needsCheckpoint(bound: number, l: Lsids): boolean {
  return bound > l.oldest && bound > l.prevWritten;
}

/** The new oldest lsid, min(bound, prev_written), or undefined when nothing can be freed. */
export function freeLogUpTo(bound: number, l: Lsids): number | undefined {
  const to = Math.min(bound, l.prevWritten);
  return to > l.oldest ? to : undefined;
}

/** In Standby nothing is shipped: the log may be freed up to everything written (WalB's WlogRemove). */
export function standbyFreeBound(l: Lsids): number {
  return l.latest;
}

/** What `Start` does: the transaction it runs, and whether it resets the wdev's log first. */
export interface StartPlan {
  via: 'StartTarget' | 'StartStandby';
  resetWal: boolean;
}

/**
 * Start in `mode` (target when empty) on a wdev: target refuses an overflowed wdev (its history is broken); standby
 * ships nothing, so it resets an overflowed log first, as WalB does.
 */
export function startPlan(mode: string, overflow: boolean, wdev: string): StartPlan {
  if (mode === 'standby') return { via: 'StartStandby', resetWal: overflow };
  if (mode !== '' && mode !== 'target')
    throw new WalbError('INVALID_ARGUMENT', `start mode '${mode}': target or standby`);
  if (overflow)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `wdev ${wdev} overflowed: recover with a hash backup (walbc hash-backup)`,
    );
  return { via: 'StartTarget', resetWal: false };
}

/** The proxies to try, in priority order: the available ones. */
export function proxyOrder(proxies: readonly { available: boolean }[]): number[] {
  return proxies.flatMap((p, i) => (p.available ? [i] : []));
}

/** The proxy to check now: the one due longest ago (nextCheck <= now), ties to the higher priority. */
export function heartbeatDue(proxies: readonly { nextCheck: number }[], nowMs: number): number | undefined {
  let due: number | undefined;
  proxies.forEach((p, i) => {
    if (p.nextCheck <= nowMs && (due === undefined || p.nextCheck < proxies[due].nextCheck)) due = i;
  });
  return due;
}

/** The first retry of a proxy a kick could not reach; each further one waits twice as long. */
export const KICK_RETRY_FIRST_MS = 1000;
/** Kick retries end once the wait would pass this (1, 2, 4, ... 32 s: about a minute in all). */
export const KICK_RETRY_LAST_MS = 32_000;

/**
 * When a proxy is checked next, and the wait of its next kick retry (0: none), after a check or a transfer that
 * reached it (ok) or not. A proxy is checked again every interval; but one that a kick made due and that still did
 * not answer — it may be starting, or the machine loaded — is retried after 1, 2, 4 ... 32 s, so that an operator's
 * kick is not lost until the next heartbeat (which may be an hour away).
 */
export function afterHeartbeat(
  state: { kickRetryMs: number },
  ok: boolean,
  nowMs: number,
  intervalMs: number,
): { nextCheck: number; kickRetryMs: number } {
  if (ok || state.kickRetryMs === 0) return { nextCheck: nowMs + intervalMs, kickRetryMs: 0 };
  const wait = Math.min(state.kickRetryMs, intervalMs);
  const next = state.kickRetryMs * 2;
  return { nextCheck: nowMs + wait, kickRetryMs: next > KICK_RETRY_LAST_MS ? 0 : next };
}

/**
 * A proxy did not take a range: the next one is tried either way. One that could not be reached (UNAVAILABLE) is
 * also marked down; one that answered (a rejection, another error) stays available.
 */
export function marksProxyDown(errorCode: string | undefined): boolean {
  return errorCode === 'UNAVAILABLE';
}

/** No proxy took the range: the wlog task fails, to be retried with back-off. */
export function noProxyTook(volume: string, errors: readonly string[]): WalbError {
  return new WalbError(
    'UNAVAILABLE',
    errors.length === 0
      ? `no proxy is available for the logs of ${volume} (waiting for a heartbeat)`
      : `no proxy took the logs of ${volume}: ${errors.join('; ')}`,
  );
}

/** The archive refused a full backup: the backup fails (rolled back), whatever the reason. */
export function backupRefused(kind: 'full' | 'hash', reason: RejectReason, message: string): WalbError {
  return new WalbError('FAILED_PRECONDITION', `the archive refused the ${kind} backup: ${reason} ${message}`);
}

/** A hash backup's chunk size: a multiple of 512 bytes up to 32 MiB (docs/formats.md §7). */
export function checkHashChunk(bytes: number): void {
  if (bytes <= 0 || bytes % 512 !== 0 || bytes > 32 << 20)
    throw new WalbError('INVALID_ARGUMENT', `chunk size ${bytes}: a multiple of 512 bytes up to 32 MiB`);
}

/** InitVol: a wdev is given, no other volume uses it, and the name is free (in this order of checks). */
export function checkInitVol(
  volume: string,
  wdev: string,
  existing: readonly { name: string; wdev: string }[],
): void {
  if (!wdev) throw new WalbError('INVALID_ARGUMENT', 'wdev is required');
  const owner = existing.find((o) => o.wdev === wdev);
  if (owner) throw new WalbError('FAILED_PRECONDITION', `wdev ${wdev} belongs to volume ${owner.name}`);
  if (existing.some((o) => o.name === volume))
    throw new WalbError('ALREADY_EXISTS', `volume ${volume} exists`);
}

/** The states in which a volume may grow (docs/servers.md §4.3). */
export const RESIZE_STATES: readonly StorageState[] = ['SyncReady', 'Stopped', 'Target', 'Standby'];

/**
 * Resize to `sizeLb` (0: the data device's size, which walb-wdevd checks) of a volume of `currentLb` in `state`:
 * a steady state of RESIZE_STATES, and never smaller than it is.
 */
export function checkResize(volume: string, state: StorageState, currentLb: number, sizeLb: number): void {
  if (!RESIZE_STATES.includes(state))
    throw new WalbError(
      'FAILED_PRECONDITION',
      `resize: volume ${volume} is ${state}, needs ${RESIZE_STATES.join(', ')}`,
    );
  if (sizeLb !== 0 && sizeLb < currentLb)
    throw new WalbError(
      'INVALID_ARGUMENT',
      `volume ${volume} holds ${currentLb} LB, asked ${sizeLb} LB: a volume can only grow`,
    );
}
