// Where each archive of a volume stands beside the primary (docs/servers.md §9.1): whether it is synchronizing — it
// is registered on every proxy that has the volume, so every new wdiff goes to it too — and how far a secondary is
// behind. Pure functions over the facts the controller gathered; the controller asks, these decide.
import { WalbError } from '../common/errors';

/** Whether an archive is registered for a volume on one proxy that has the volume. */
export interface Registration {
  proxy: string;
  registered: boolean;
}

/**
 * Synchronizing: registered on every proxy that has the volume (and there is one). Registered on some only is an
 * error naming them: a start-synchronizing or stop-synchronizing was cut half-way.
 */
export function isSynchronizing(volume: string, archive: string, regs: readonly Registration[]): boolean {
  const on = regs.filter((r) => r.registered).map((r) => r.proxy);
  const off = regs.filter((r) => !r.registered).map((r) => r.proxy);
  if (on.length > 0 && off.length > 0)
    throw new WalbError(
      'FAILED_PRECONDITION',
      `${archive} is registered for ${volume} on ${on.join(', ')} but not on ${off.join(', ')}: run ` +
        `walbc start-synchronizing or stop-synchronizing ${volume} ${archive} again`,
    );
  return on.length > 0;
}

/** A snapshot an archive can restore. */
export interface Restorable {
  gid: number;
  /** Unix seconds. */
  timestamp: number;
}

/** One archive's standing for a volume, as `walbc status` shows it. */
export interface ArchiveStanding {
  volume: string;
  archive: string;
  primary: boolean;
  /** Its latest restorable snapshot; null when it has none. */
  latest: Restorable | null;
  /** The proxies on which it is registered for the volume. */
  registeredOn: string[];
  /** Registered on every proxy that has the volume. */
  synchronizing: boolean;
  /**
   * A secondary's lag behind the primary (null for the primary): snapshots, bytes of wdiffs it still lacks, and the
   * time between the two latest snapshots (null while it has none).
   */
  behind: { gids: number; bytes: number; seconds: number | null } | null;
}

/** What the controller gathered about one archive of a volume. */
export interface ArchiveSide {
  archive: string;
  latest: Restorable | null;
  /** The gid its diffs reach (the end of its latest snapshot); 0 without a base. */
  latestGid: number;
}

/**
 * Standing of every archive of a volume. `primaryDiffs`: the primary's wdiffs (gid range and bytes); `proxies`: for
 * every proxy that has the volume, the bytes it still queues for each registered archive. A secondary's pending
 * bytes are the larger of the primary's diffs past its latest gid and what the proxies queue for it: a
 * synchronizing secondary is sent each wdiff by the proxies, another gets the primary's diffs by replication.
 */
export function archiveStandings(
  volume: string,
  primary: ArchiveSide | undefined,
  secondaries: readonly ArchiveSide[],
  primaryDiffs: readonly { gidB: number; bytes: number }[],
  proxies: readonly { proxy: string; queued: Map<string, number> }[],
): ArchiveStanding[] {
  const registration = (archive: string) => {
    const registeredOn = proxies.filter((p) => p.queued.has(archive)).map((p) => p.proxy);
    return { registeredOn, synchronizing: registeredOn.length > 0 && registeredOn.length === proxies.length };
  };
  const out: ArchiveStanding[] = [];
  if (primary)
    out.push({
      volume,
      archive: primary.archive,
      primary: true,
      latest: primary.latest,
      ...registration(primary.archive),
      behind: null,
    });
  for (const s of secondaries) {
    const fromPrimary = primaryDiffs.filter((d) => d.gidB >= s.latestGid).reduce((a, d) => a + d.bytes, 0);
    const queued = proxies.reduce((a, p) => a + (p.queued.get(s.archive) ?? 0), 0);
    const p = primary?.latest;
    out.push({
      volume,
      archive: s.archive,
      primary: false,
      latest: s.latest,
      ...registration(s.archive),
      behind: {
        gids: Math.max(0, (p?.gid ?? 0) - (s.latest?.gid ?? 0)),
        bytes: Math.max(fromPrimary, queued),
        seconds: p && s.latest ? Math.max(0, p.timestamp - s.latest.timestamp) : null,
      },
    });
  }
  return out;
}

/** A row of the archives table of `walbc status`: VOLUME ARCHIVE LATEST TIME SYNC BEHIND. */
export function standingLine(s: ArchiveStanding): string {
  const latest = s.latest
    ? `${s.latest.gid}\t${new Date(s.latest.timestamp * 1000).toISOString().slice(0, 19)}`
    : '-\t-';
  const sync = s.synchronizing
    ? 'yes'
    : s.registeredOn.length > 0
      ? `partly (${s.registeredOn.join(',')})`
      : 'no';
  const b = s.behind;
  const behind = !b
    ? 'primary'
    : `${b.gids} gid(s), ${(b.bytes / 1048576).toFixed(1)} MiB, ${b.seconds === null ? '-' : `${b.seconds} s`}`;
  return `${s.volume}\t${s.archive}\t${latest}\t${sync}\t${behind}`;
}
