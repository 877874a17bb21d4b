// `walbc backups` and `walbc verify` (docs/servers.md §6.9): the archive's ListBackups reply as typed rows, one line
// per snapshot, and verify's line in the format of `walb-tool hash`. Pure functions over what the controller asked.
import type { Backup__Output } from '../generated/walb/v1/Backup';

/** A snapshot's last verification; absent when it was never verified. */
export interface BackupVerification {
  ok: boolean;
  /** ISO 8601 (UTC). */
  time: string;
  /** When ok: the whole-image hash (hex). */
  hash?: string;
  /** When failed: the stable code and the message. */
  errorCode?: string;
  error?: string;
}

/** One restorable snapshot as `walbc backups --json` prints it. */
export interface BackupRow {
  gid: number;
  /** ISO 8601 (UTC) of the snapshot. */
  time: string;
  explicit: boolean;
  /** The wdiffs a restore of it reads on top of the base image, and their bytes. */
  diffs: number;
  diffBytes: number;
  verification?: BackupVerification;
}

export function backupRow(b: Backup__Output): BackupRow {
  const v = b.verification;
  return {
    gid: Number(b.gid),
    time: new Date(Number(b.timestamp) * 1000).toISOString(),
    explicit: b.explicit,
    diffs: b.diffs,
    diffBytes: Number(b.diffBytes),
    verification: v
      ? {
          ok: v.ok,
          time: new Date(Number(v.timeMs)).toISOString(),
          ...(v.ok ? { hash: v.hash } : { errorCode: v.errorCode, error: v.error }),
        }
      : undefined,
  };
}

export const BACKUPS_HEADER = 'GID\tTIME\tKIND\tDIFFS\tDIFF-BYTES\tVERIFIED';

/** `GID TIME explicit|implicit DIFFS BYTES never|ok AT HASH|FAILED AT CODE: MESSAGE`, tab-separated. */
export function backupLine(r: BackupRow): string {
  const time = (iso: string) => iso.slice(0, 19);
  const v = r.verification;
  const verified = !v
    ? 'never'
    : v.ok
      ? `ok ${time(v.time)} ${v.hash}`
      : `FAILED ${time(v.time)} ${v.errorCode}: ${v.error}`;
  return [r.gid, time(r.time), r.explicit ? 'explicit' : 'implicit', r.diffs, r.diffBytes, verified].join(
    '\t',
  );
}

/** Verify's line: the hash and what it is of, as `walb-tool hash` prints `HASH  IMAGE`. */
export function verifyLine(volume: string, gid: number, hash: string): string {
  return `${hash}  ${volume} gid ${gid}`;
}
