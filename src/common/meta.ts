// The snapshot/diff algebra of WalB's servers (docs/servers.md §2, docs/formats.md §6): snapshots as gid
// ranges, diffs between them, when a diff applies to a snapshot, when two diffs merge, the restorable snapshots of
// an archive, wdiff file names (the name *is* the diff's metadata) and gid allocation at the storage.
// Gids are JS numbers: they count snapshots, and 2^53 of them is beyond any volume's life.
import { WalbError } from './errors';

/** `|B|` (clean, B == E) or `|B,E|` (dirty: the image is consistent only once gid E is reached). */
export interface MetaSnap {
  readonly gidB: number;
  readonly gidE: number;
}

export interface MetaDiff {
  readonly snapB: MetaSnap;
  readonly snapE: MetaSnap;
  /** The snapshot at snapB is implicit: this diff may be merged into the one before it. */
  readonly isMergeable: boolean;
  /** Made by hash comparison: applies only to a snapshot whose B is snapB.B, and never merges. */
  readonly isCompDiff: boolean;
  /** Unix seconds (UTC) of the snapshot reached by applying the diff. */
  readonly timestamp: number;
  /** Bytes of the wdiff file. */
  readonly dataSize: number;
}

/** The archive's base image: a snapshot, or while a diff list is applied, both ends of it. */
export interface MetaState {
  readonly snapB: MetaSnap;
  readonly snapE?: MetaSnap; // set while applying
  readonly timestamp: number;
}

export type Relation = 'too-old' | 'applicable' | 'too-new';

function checkGid(g: number, what: string): void {
  if (!Number.isSafeInteger(g) || g < 0) throw new WalbError('INVALID_ARGUMENT', `${what}: bad gid ${g}`);
}

export function snap(gidB: number, gidE = gidB): MetaSnap {
  checkGid(gidB, 'snapshot');
  checkGid(gidE, 'snapshot');
  if (gidB > gidE) throw new WalbError('INVALID_ARGUMENT', `snapshot |${gidB},${gidE}|: B > E`);
  return { gidB, gidE };
}

export const isCleanSnap = (s: MetaSnap): boolean => s.gidB === s.gidE;
export const snapText = (s: MetaSnap): string => (isCleanSnap(s) ? `|${s.gidB}|` : `|${s.gidB},${s.gidE}|`);
export const sameSnap = (a: MetaSnap, b: MetaSnap): boolean => a.gidB === b.gidB && a.gidE === b.gidE;

export function diff(
  snapB: MetaSnap,
  snapE: MetaSnap,
  opts: { isMergeable?: boolean; isCompDiff?: boolean; timestamp?: number; dataSize?: number } = {},
): MetaDiff {
  if (!(snapB.gidB < snapE.gidB) || !(snapB.gidE <= snapE.gidE)) {
    throw new WalbError('INVALID_ARGUMENT', `diff ${snapText(snapB)}-->${snapText(snapE)} does not progress`);
  }
  return {
    snapB,
    snapE,
    isMergeable: opts.isMergeable ?? false,
    isCompDiff: opts.isCompDiff ?? false,
    timestamp: opts.timestamp ?? 0,
    dataSize: opts.dataSize ?? 0,
  };
}

export const isCleanDiff = (d: MetaDiff): boolean => isCleanSnap(d.snapB) && isCleanSnap(d.snapE);
export const diffText = (d: MetaDiff): string =>
  `${snapText(d.snapB)}-${d.isMergeable ? 'M' : '-'}${d.isCompDiff ? 'C' : '-'}->${snapText(d.snapE)}`;

/** How diff d stands to snapshot s. */
export function relation(s: MetaSnap, d: MetaDiff): Relation {
  if (d.isCompDiff) {
    if (d.snapB.gidB === s.gidB) return 'applicable';
    return d.snapB.gidB > s.gidB ? 'too-new' : 'too-old';
  }
  if (d.snapB.gidB > s.gidB) return 'too-new';
  if (d.snapE.gidB <= s.gidB) return 'too-old';
  return 'applicable';
}

/** The snapshot after applying d to s (a dirty snapshot turns clean once clean diffs reach its E). */
function reach(s: MetaSnap, d: MetaDiff): MetaSnap {
  return isCleanDiff(d) ? snap(d.snapE.gidB, Math.max(d.snapE.gidB, s.gidE)) : d.snapE;
}

export function applySnap(s: MetaSnap, d: MetaDiff): MetaSnap {
  if (relation(s, d) !== 'applicable')
    throw new WalbError('INVALID_ARGUMENT', `${diffText(d)} is ${relation(s, d)} for ${snapText(s)}`);
  return reach(s, d);
}

export function canMerge(d0: MetaDiff, d1: MetaDiff): boolean {
  return (
    d1.isMergeable &&
    !d0.isCompDiff &&
    !d1.isCompDiff &&
    d0.snapB.gidB <= d1.snapB.gidB &&
    d1.snapB.gidB <= d0.snapE.gidB &&
    d0.snapE.gidB < d1.snapE.gidB
  );
}

export function mergeDiff(d0: MetaDiff, d1: MetaDiff): MetaDiff {
  if (!canMerge(d0, d1))
    throw new WalbError('INVALID_ARGUMENT', `${diffText(d0)} and ${diffText(d1)} do not merge`);
  const snapE = isCleanSnap(d1.snapB) && isCleanSnap(d1.snapE) ? reach(d0.snapE, d1) : d1.snapE;
  return { ...d0, snapE, timestamp: d1.timestamp, dataSize: d0.dataSize + d1.dataSize };
}

// ---- wdiff file names: YYYYMMDDhhmmss-XY-b-e.wdiff or YYYYMMDDhhmmss-XY-bB-bE-eB-eE.wdiff ----

function utcStamp(unixSec: number): string {
  const d = new Date(unixSec * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    p(d.getUTCFullYear(), 4) +
    p(d.getUTCMonth() + 1) +
    p(d.getUTCDate()) +
    p(d.getUTCHours()) +
    p(d.getUTCMinutes()) +
    p(d.getUTCSeconds())
  );
}

function parseUtcStamp(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(s);
  if (!m) return NaN;
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number);
  const t = Date.UTC(y, mo - 1, d, h, mi, se);
  const back = new Date(t);
  // Reject dates that Date.UTC silently normalizes (month 13, day 32, ...).
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) return NaN;
  return t / 1000;
}

export function diffFileName(d: MetaDiff): string {
  const gids = isCleanDiff(d)
    ? `${d.snapB.gidB}-${d.snapE.gidB}`
    : `${d.snapB.gidB}-${d.snapB.gidE}-${d.snapE.gidB}-${d.snapE.gidE}`;
  return `${utcStamp(d.timestamp)}-${d.isMergeable ? 'M' : '-'}${d.isCompDiff ? 'C' : '-'}-${gids}.wdiff`;
}

/** The diff a wdiff file name describes; undefined if the name is not one (temporary files, others). */
export function parseDiffFileName(name: string, dataSize = 0): MetaDiff | undefined {
  const m = /^(\d{14})-([M-])([C-])-(\d+(?:-\d+){1,3})\.wdiff$/.exec(name);
  if (!m) return undefined;
  const timestamp = parseUtcStamp(m[1]);
  if (Number.isNaN(timestamp)) return undefined;
  const g = m[4].split('-').map(Number);
  if (g.some((x) => !Number.isSafeInteger(x))) return undefined;
  let b: MetaSnap;
  let e: MetaSnap;
  try {
    if (g.length === 2) {
      b = snap(g[0]);
      e = snap(g[1]);
    } else if (g.length === 4) {
      b = snap(g[0], g[1]);
      e = snap(g[2], g[3]);
    } else {
      return undefined;
    }
    return diff(b, e, { isMergeable: m[2] === 'M', isCompDiff: m[3] === 'C', timestamp, dataSize });
  } catch {
    return undefined;
  }
}

// ---- gid allocation at the storage (docs/servers.md §2.7) ----

export interface LsidGid {
  lsid: number;
  gid: number;
  isMergeable: boolean;
  timestamp: number;
}

/**
 * The gid of a snapshot taken at `lsid` after `prev` (the newest queued record, or the done record). Gids are
 * reserved for every `maxWlogSendPb` of log, so that a long range can be shipped as several diffs.
 */
export function nextGid(prev: { lsid: number; gid: number }, lsid: number, maxWlogSendPb: number): number {
  if (lsid < prev.lsid)
    throw new WalbError('INVALID_ARGUMENT', `snapshot lsid ${lsid} is before ${prev.lsid}`);
  if (!(maxWlogSendPb > 0)) throw new WalbError('INVALID_ARGUMENT', 'maxWlogSendPb must be positive');
  return prev.gid + 1 + Math.floor((lsid - prev.lsid) / maxWlogSendPb);
}

// ---- a set of diffs (an archive's or a proxy's) ----

export interface RestorableSnap {
  gid: number;
  timestamp: number;
  /** Explicit: the last one, or the next diff is not mergeable (a snapshot someone asked for). */
  isExplicit: boolean;
}

export class DiffSet {
  private readonly byB = new Map<number, MetaDiff[]>();

  constructor(diffs: Iterable<MetaDiff> = []) {
    for (const d of diffs) this.add(d);
  }

  add(d: MetaDiff): void {
    const l = this.byB.get(d.snapB.gidB) ?? [];
    if (
      l.some((x) => sameSnap(x.snapB, d.snapB) && sameSnap(x.snapE, d.snapE) && x.isCompDiff === d.isCompDiff)
    )
      throw new WalbError('ALREADY_EXISTS', `diff ${diffText(d)} exists`);
    l.push(d);
    this.byB.set(d.snapB.gidB, l);
  }

  remove(d: MetaDiff): boolean {
    const l = this.byB.get(d.snapB.gidB);
    const i = l?.findIndex((x) => sameSnap(x.snapB, d.snapB) && sameSnap(x.snapE, d.snapE)) ?? -1;
    if (!l || i < 0) return false;
    l.splice(i, 1);
    if (l.length === 0) this.byB.delete(d.snapB.gidB);
    return true;
  }

  all(): MetaDiff[] {
    return [...this.byB.values()]
      .flat()
      .sort((a, b) => a.snapB.gidB - b.snapB.gidB || a.snapE.gidB - b.snapE.gidB);
  }

  /**
   * The chain of diffs that applies to `s` one after another: at each step, among the applicable diffs the one
   * that gets furthest (largest snapE.B), as WalB's MetaDiffManager chooses. Stops at `maxGid` when given.
   */
  applicableChain(s: MetaSnap, maxGid = Infinity): MetaDiff[] {
    const chain: MetaDiff[] = [];
    let cur = s;
    for (;;) {
      let best: MetaDiff | undefined;
      for (const d of this.all()) {
        if (d.snapB.gidB > cur.gidB) break;
        if (relation(cur, d) !== 'applicable' || d.snapE.gidB > maxGid) continue;
        if (!best || d.snapE.gidB > best.snapE.gidB) best = d;
      }
      if (!best) return chain;
      chain.push(best);
      cur = reach(cur, best);
    }
  }

  /**
   * Snapshots that can be restored from a base state: the base itself when clean, then every clean snapshot
   * reached along the applicable chain. With `all = false` only the explicit ones plus the oldest and the latest.
   */
  restorable(base: MetaState, all = false): RestorableSnap[] {
    let cur = base.snapB;
    let chain = this.applicableChain(cur);
    const out: RestorableSnap[] = [];
    if (base.snapE) {
      // Applying: the minimum list that reaches snapE must be applied together; nothing before it is restorable.
      const reachIdx = (() => {
        let c = cur;
        for (let i = 0; i < chain.length; i++) {
          c = reach(c, chain[i]);
          if (c.gidB >= base.snapE!.gidB) return i;
        }
        return -1;
      })();
      if (reachIdx < 0) return [];
      for (let i = 0; i <= reachIdx; i++) cur = reach(cur, chain[i]);
      chain = chain.slice(reachIdx + 1);
    }
    const push = (s: MetaSnap, timestamp: number, nextMergeable: boolean | undefined) => {
      if (!isCleanSnap(s)) return;
      out.push({ gid: s.gidB, timestamp, isExplicit: nextMergeable !== true });
    };
    push(cur, base.timestamp, chain[0]?.isMergeable);
    for (let i = 0; i < chain.length; i++) {
      cur = reach(cur, chain[i]);
      push(cur, chain[i].timestamp, chain[i + 1]?.isMergeable);
    }
    if (all) return out;
    return out.filter((r, i) => r.isExplicit || i === 0 || i === out.length - 1);
  }

  /** Consecutive diffs from `first` that canMerge() into one, with the merged result (for the proxy's send queue). */
  mergeableRun(first: MetaDiff, maxDiffs = Infinity): { diffs: MetaDiff[]; merged: MetaDiff } {
    const diffs = [first];
    let merged = first;
    for (;;) {
      if (diffs.length >= maxDiffs) break;
      const next = this.all().find(
        (d) => d !== merged && canMerge(merged, d) && d.snapB.gidB === merged.snapE.gidB,
      );
      if (!next) break;
      diffs.push(next);
      merged = mergeDiff(merged, next);
    }
    return { diffs, merged };
  }
}
