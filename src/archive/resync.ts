// The resync step of a replication, on the source archive (docs/servers.md §7.7.1): a HashSync whose header names
// this archive's lineage (archive uuid, storage uuid, base state). The destination drops its diffs and restored
// images and streams the chunk hashes of its raw base image; this side hashes the same chunks of its own base image
// and sends the chunks that differ; at the end the destination holds this base image and lineage, Archived.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { WalbError } from '../common/errors';
import type { Promised } from '../common/grpc';
import { differingChunks, type CompareOp } from '../common/hash-compare';
import type { Logger } from '../common/log';
import { runTransfer, type TransferResult } from '../common/transfer';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { HashSyncRequest } from '../generated/walb/v1/HashSyncRequest';
import type { ArchiveVolumeStore } from './volume-store';

/** Bytes per hashed chunk of a resync, as a hash backup's default (docs/formats.md §7). */
export const RESYNC_CHUNK = 64 << 10;
/** The default longest wait for the destination (its answer, room to send) before the step fails as UNAVAILABLE. */
const IDLE_TIMEOUT_MS = 60_000;

export interface ResyncOptions extends CompareOp {
  /** Bytes hashed and compared at a time (default RESYNC_CHUNK). */
  chunkSize?: number;
  /** Read rate limit of the source's base image [bytes/s], 0 = none. */
  bytesPerSec?: number;
  /** Longest wait for the destination (default 60 s; the final answer gets six times as long). */
  idleTimeoutMs?: number;
}

/**
 * Resyncs the volume of `store` onto `destination`. Resolves once the destination acknowledged (its base image
 * equal to this one, synced, Archived), or with the destination's refusal for the caller to react to. The base
 * image must not change meanwhile: the caller holds the volume's replication action.
 */
export async function resyncStep(
  deps: { log: Logger },
  store: ArchiveVolumeStore,
  destination: Promised<ArchiveClient>,
  opts: ResyncOptions,
): Promise<TransferResult> {
  const volume = store.volume;
  const base = store.base;
  if (!base) throw new WalbError('FAILED_PRECONDITION', `volume ${volume} has no base image to resync from`);
  const chunkSize = opts.chunkSize ?? RESYNC_CHUNK;
  const seed = crypto.randomInt(2 ** 47);
  const size = store.sizeLb * 512;
  const header = {
    header: {
      volume,
      size: store.sizeLb,
      chunkSize,
      seed,
      timestamp: base.timestamp,
      replica: {
        archiveUuid: store.archiveUuid,
        storageUuid: store.storageUuid,
        base: { snapB: base.snapB, snapE: base.snapE, timestamp: base.timestamp },
      },
    },
  };
  const image = store.baseImage;
  let sent = 0;
  const fh = await fs.promises.open(image, 'r');
  try {
    const result = await runTransfer(
      destination.HashSync(),
      header,
      async function* (_accepted, reply): AsyncIterable<HashSyncRequest> {
        const spec = { chunkSize, seed, bytesPerSec: opts.bytesPerSec ?? 0 };
        for await (const m of differingChunks(image, fh, size, spec, reply, opts)) {
          sent += m.length;
          yield m.message as unknown as HashSyncRequest;
        }
      },
      // The destination takes the lineage from the header; the end only closes the scan.
      { end: { snapshot: base.snapB, storageUuid: store.storageUuid } },
      { idleTimeoutMs: opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS },
    );
    if (result.ok)
      deps.log('info', 'resync-sent', { volume, sentBytes: sent, archiveUuid: store.archiveUuid });
    return result;
  } finally {
    await fh.close();
  }
}
