// A hash backup of a volume to the primary archive (docs/servers.md §7.6): inside SyncReady → HashSync → Stopped,
// the archive names its latest snapshot; the log restarts with gids above it; the archive streams the chunk hashes
// of that snapshot while this side hashes the same chunks of the data device and sends the chunks that differ; the
// scan ends with an explicit snapshot |gidB,gidE|; then Target and the wlog task runs.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { WalbError, cancelled } from '../common/errors';
import { bulkMessage } from '../common/bulk-message';
import { runTransfer, type TransferResult } from '../common/transfer';
import type { Accepted__Output } from '../generated/walb/v1/Accepted';
import type { HashSyncRequest } from '../generated/walb/v1/HashSyncRequest';
import type { TransferReply__Output } from '../generated/walb/v1/TransferReply';
import { native, type HashResult } from '../native';
import type { BackupDeps, FullBackupOp } from './full-backup';
import { backupRefused, maxSendPb } from './policy';
import { resetLogForBackup, type Volume } from './volumes';
import { pbsOf } from './wlog-shipping';

/** HashSyncRequest.data's field number (proto/walb/v1/archive.proto): differing chunks are built pre-encoded. */
const HASH_SYNC_DATA_FIELD = 2;
/** An archive busy with a wdiff of the volume is asked again this often, for at most BUSY_RETRY_MS. */
const BUSY_RETRY_DELAY_MS = 500;
const BUSY_RETRY_MS = 30_000;
/** Differing chunks read ahead of the one being sent. */
const READS_AHEAD = 4;

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
        for await (const m of differingChunks(st.ddev, fh, sizeLb * 512, spec, reply, op)) {
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

/** Waits `ms`, or less when `signal` aborts (the caller then checks it). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

interface ChunkSpec {
  chunkSize: number;
  seed: number;
  /** Read rate limit of the scan [bytes/s], 0 = none (fullScanBytesPerSec). */
  bytesPerSec: number;
}

interface DifferingChunk {
  length: number;
  message: ReturnType<typeof bulkMessage>['message'];
}

/** Chunk `[at, at + n)` of the device as a pre-encoded data message. */
async function readChunk(fh: fs.promises.FileHandle, at: number, n: number): Promise<DifferingChunk> {
  const m = bulkMessage(HASH_SYNC_DATA_FIELD, at, n);
  const { bytesRead } = await fh.read(m.data, 0, n, at);
  if (bytesRead !== n) throw new WalbError('IO_ERROR', `short read at ${at}: ${bytesRead} of ${n} bytes`);
  return { length: n, message: m.message };
}

/**
 * The chunks of the device whose hash differs from the archive's, in address order, as pre-encoded data
 * messages. The device is hashed natively one message of the archive's hashes ahead, so that both ends hash at
 * once; a differing chunk is then read again whole.
 */
async function* differingChunks(
  ddev: string,
  fh: fs.promises.FileHandle,
  size: number,
  spec: ChunkSpec,
  reply: () => Promise<TransferReply__Output>,
  op: FullBackupOp,
): AsyncIterable<DifferingChunk> {
  const { chunkSize, seed, bytesPerSec } = spec;
  const started = Date.now();
  const hashOf = async (offset: number, length: number) => {
    // The rate limit holds a batch back until the scan is under the limit again.
    const early = bytesPerSec > 0 ? (offset / bytesPerSec) * 1000 - (Date.now() - started) : 0;
    if (early > 0) await sleep(early, op.signal);
    return native.hashImage(ddev, { offset, length, chunkSize, seed, chunks: true });
  };
  let ahead: { offset: number; result: Promise<HashResult> } | undefined;
  let offset = 0;
  const reads: Promise<DifferingChunk>[] = [];
  try {
    while (offset < size) {
      if (op.signal.aborted) throw cancelled();
      const r = await reply();
      const theirs = r.hashes;
      if (!theirs || theirs.offset !== offset || theirs.hashes.length === 0 || theirs.hashes.length % 16)
        throw new WalbError('INVALID_ARGUMENT', `expected the chunk hashes from ${offset}`);
      const length = Math.min((theirs.hashes.length / 16) * chunkSize, size - offset);
      const mine = ahead?.offset === offset ? ahead.result : hashOf(offset, length);
      ahead =
        offset + length < size
          ? { offset: offset + length, result: hashOf(offset + length, length) }
          : undefined;
      const ours = (await mine).chunks!;
      const differing: number[] = [];
      for (let k = 0; k * chunkSize < length; k++)
        if (ours.compare(theirs.hashes, k * 16, k * 16 + 16, k * 16, k * 16 + 16) !== 0)
          differing.push(offset + k * chunkSize);
      // A few reads in flight, so that the next chunks are read while this one goes out.
      for (let next = 0; next < differing.length || reads.length;) {
        while (reads.length < READS_AHEAD && next < differing.length) {
          const at = differing[next++];
          const read = readChunk(fh, at, Math.min(chunkSize, size - at));
          read.catch(() => undefined); // its failure surfaces when it is awaited in turn
          reads.push(read);
        }
        yield await reads.shift()!;
      }
      offset += length;
      op.progress(offset, size);
    }
    // Cancelled during the last batch: no end is sent, so both sides roll back.
    if (op.signal.aborted) throw cancelled();
  } finally {
    // A stopped scan must not leave a hash job or a read on a device the caller is about to let go.
    await Promise.allSettled([ahead?.result, ...reads]);
  }
}
