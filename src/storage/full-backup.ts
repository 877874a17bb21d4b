// A full backup of a volume to the primary archive (docs/servers.md §7.3, §7.4): inside SyncReady → FullSync →
// Stopped, reset the log, scan the data device to the archive (through its bulk port when it names one, else on
// the FullSync stream), end with an explicit snapshot |0,E|; then Target and the wlog task runs.
import fs from 'node:fs';
import { cancelled } from '../common/errors';
import { tlsPem, withPort, type Promised } from '../common/grpc';
import type { Logger } from '../common/log';
import { FULL_SYNC_BULK, fileBulks, runTransfer, sendBulks } from '../common/transfer';
import type { StorageConfig } from '../config/storage';
import type { Accepted__Output } from '../generated/walb/v1/Accepted';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { FullSyncRequest } from '../generated/walb/v1/FullSyncRequest';
import type { WdevClient } from '../wdev/client';
import { backupRefused, maxSendPb } from './policy';
import { resetLogForBackup, type Volume } from './volumes';
import { pbsOf } from './wlog-shipping';

/** FullSyncRequest.data's field number (proto/walb/v1/archive.proto): full-backup bulks are built pre-encoded. */
const FULL_SYNC_DATA_FIELD = 2;
/** Reads in flight, so that the disk and the network overlap. */
const READ_AHEAD = 4;

/** What a full or hash backup works with (the storage server makes one for both). */
export interface BackupDeps {
  config: StorageConfig;
  log: Logger;
  wdevd: WdevClient;
  /** The primary archive. */
  archive: Promised<ArchiveClient>;
  /** The wlog task of a volume runs now. */
  ship: (volume: string) => void;
}

export interface FullBackupOp {
  progress(done: number, total?: number): void;
  signal: AbortSignal;
}

export class FullBackup {
  constructor(private readonly deps: BackupDeps) {}

  /** Runs the backup in bulks of `bulk` bytes; the result is the gid E of its snapshot. */
  async run(v: Volume, bulk: number, op: FullBackupOp): Promise<string> {
    let gidE = 0;
    await v.state.transact('FullSync', async () => {
      // The log restarts at lsid 0 with a new uuid; everything written from now on reaches the archive as diffs
      // (the image scanned below is dirty until they are applied).
      const st = await resetLogForBackup(v, this.deps.wdevd, 0);
      const size = st.deviceSize * 512;
      const startedAt = Math.floor(Date.now() / 1000);
      const fh = await fs.promises.open(st.ddev, 'r');
      let bulkBytes = 0;
      try {
        const result = await runTransfer(
          this.deps.archive.FullSync(),
          { header: { volume: v.name, size: st.deviceSize, storageUuid: st.uuid, timestamp: startedAt } },
          (accepted) =>
            this.bulks(v.name, { path: st.ddev, fh, size }, bulk, accepted, op, (n) => (bulkBytes = n)),
          // The end is built after the scan: the explicit snapshot at the latest lsid then; the base is
          // |0, gidE|, clean once the diffs up to gidE are applied.
          async () => {
            const st2 = await this.deps.wdevd.status(v.store.wdev);
            const maxPb = maxSendPb(this.deps.config.maxWlogSendMb, pbsOf(st2));
            const rec = await v.store.addSnapshot(st2.lsids!.latest, false, maxPb);
            gidE = rec.gid;
            return { end: { snapshot: { gidB: 0, gidE }, bulkBytes } };
          },
          { idleTimeoutMs: this.deps.config.socketTimeoutSec * 1000 },
        );
        if (!result.ok) throw backupRefused('full', result.reason, result.message);
      } finally {
        v.logReset = false;
        await fh.close();
      }
    });
    await v.state.transact('StartTarget', async () => undefined);
    this.deps.ship(v.name);
    this.deps.log('info', 'full-backup-done', { volume: v.name, gid: gidE });
    return String(gidE);
  }

  /**
   * The bytes: through the archive's bulk port when its Accepted names one (the addon reads and sends from its
   * own threads; `viaBulk` gets the count), else as bulk messages on the FullSync stream.
   */
  private async *bulks(
    volume: string,
    ddev: { path: string; fh: fs.promises.FileHandle; size: number },
    bulk: number,
    accepted: Accepted__Output,
    op: FullBackupOp,
    viaBulk: (bytes: number) => void,
  ): AsyncIterable<FullSyncRequest> {
    const scanRate = this.deps.config.fullScanBytesPerSec;
    if (accepted.bulkPort) {
      const target = withPort(this.deps.config.archive, accepted.bulkPort);
      const r = await sendBulks(
        {
          target,
          method: FULL_SYNC_BULK,
          token: accepted.bulkToken,
          path: ddev.path,
          size: ddev.size,
          bulk,
          bytesPerSec: scanRate,
          timeoutSec: this.deps.config.socketTimeoutSec,
          tls: tlsPem(this.deps.config.tls),
        },
        op,
      );
      if ('sent' in r) return viaBulk(r.sent);
      // A firewall or a forwarded address: the main port still works, only slower.
      this.deps.log('warn', 'bulk-port-unreachable', {
        volume,
        target,
        error: r.unreachable,
        hint: "open the archive's bulkListen port to the storage, or set it to off",
      });
    }
    let scanned = 0;
    for await (const b of fileBulks(ddev.fh, ddev.size, bulk, FULL_SYNC_DATA_FIELD, READ_AHEAD, scanRate)) {
      if (op.signal.aborted) throw cancelled();
      scanned += b.length;
      op.progress(scanned, ddev.size);
      // Zero bulks stay holes on the archive.
      if (b.message) yield b.message as unknown as FullSyncRequest;
    }
  }
}
