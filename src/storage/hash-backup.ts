// A hash backup of a volume to the primary archive (docs/servers.md §7.6): inside SyncReady → HashSync → Stopped,
// the archive names its latest snapshot; the log restarts with gids above it; the archive streams the chunk hashes
// of that snapshot while this side hashes the same chunks of the data device and sends the chunks that differ; the
// scan ends with an explicit snapshot |gidB,gidE|; then Target and the wlog task runs.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { WalbError, cancelled } from '../common/errors';
import { differingChunks, fileImage, sleep } from '../common/hash-compare';
import { runTransfer, type TransferResult } from '../common/transfer';
import type { Accepted__Output } from '../generated/walb/v1/Accepted';
import type { HashSyncRequest } from '../generated/walb/v1/HashSyncRequest';
import type { TransferReply__Output } from '../generated/walb/v1/TransferReply';
import type { BackupDeps, FullBackupOp } from './full-backup';
import { backupRefused, maxSendPb } from './policy';
import { resetLogForBackup, type Volume } from './volumes';
import { pbsOf } from './wlog-shipping';

/** An archive busy with a wdiff of the volume is asked again this often, for at most BUSY_RETRY_MS. */
const BUSY_RETRY_DELAY_MS = 500;
const BUSY_RETRY_MS = 30_000;

export class HashBackup {
  constructor(private readonly deps: BackupDeps) {}

  /** Runs the backup in chunks of `chunkSize` bytes; the result is the gid E of its snapshot. */
  async run(v: Volume, chunkSize: number, op: FullBackupOp): Promise<string> {
    let gidE = 0;
    let sent = 0;
    await v.state.transact('HashSync', async () => {
      const sizeLb = (await this.deps.wdevd.status(v.store.wdev)).deviceSize;
      const header = {
        header: {
          volume: v.name,
          size: sizeLb,
          chunkSize,
          seed: crypto.randomInt(2 ** 47),
          timestamp: Math.floor(Date.now() / 1000),
        },
      };
      let gidB = 0;
      let uuid = '';
      let fh: fs.promises.FileHandle | undefined;
      const { wdevd, ship } = this.deps;
      const scanRate = this.deps.config.fullScanBytesPerSec;
      const body = async function* (
        accepted: Accepted__Output,
        reply: () => Promise<TransferReply__Output>,
      ): AsyncIterable<HashSyncRequest> {
        if (!accepted.latest) throw new WalbError('INTERNAL', 'the archive did not name its latest snapshot');
        // gids continue above anything the archive has; the writes from now on ship as diffs from gidB.
        gidB = accepted.latest.gidE + 1;
        const st = await resetLogForBackup(v, wdevd, gidB);
        uuid = st.uuid;
        ship(v.name);
        fh = await fs.promises.open(st.ddev, 'r');
        const spec = { ...header.header, bytesPerSec: scanRate };
        for await (const m of differingChunks(fileImage(st.ddev, fh), sizeLb * 512, spec, reply, op)) {
          sent += m.length;
          yield m.message as unknown as HashSyncRequest;
        }
      };
      // The end is built after the scan: the explicit snapshot at the latest lsid then.
      const end = async () => {
        const st = await this.deps.wdevd.status(v.store.wdev);
        const rec = await v.store.addSnapshot(
          st.lsids!.latest,
          false,
          maxSendPb(this.deps.config.maxWlogSendMb, pbsOf(st)),
        );
        gidE = rec.gid;
        return { end: { snapshot: { gidB, gidE }, storageUuid: uuid } };
      };
      try {
        const result = await this.whileBusy(op, () =>
          runTransfer(this.deps.archive.HashSync(), header, body, end, {
            idleTimeoutMs: this.deps.config.socketTimeoutSec * 1000,
          }),
        );
        if (!result.ok) throw backupRefused('hash', result.reason, result.message);
      } finally {
        v.logReset = false;
        await fh?.close();
      }
    });
    await v.state.transact('StartTarget', async () => undefined);
    this.deps.ship(v.name);
    this.deps.log('info', 'hash-backup-done', { volume: v.name, gid: gidE, sentBytes: sent });
    return String(gidE);
  }

  /** The archive answers BUSY while a wdiff of the volume arrives there: ask again shortly. */
  private async whileBusy(op: FullBackupOp, attempt: () => Promise<TransferResult>): Promise<TransferResult> {
    const until = Date.now() + BUSY_RETRY_MS;
    for (;;) {
      const r = await attempt();
      if (r.ok || r.reason !== 'BUSY' || Date.now() > until) return r;
      await sleep(BUSY_RETRY_DELAY_MS, op.signal);
      if (op.signal.aborted) throw cancelled();
    }
  }
}
