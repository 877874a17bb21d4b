// The replication steps that compare hashes, on the source archive (docs/servers.md §7.7.1, §7.7.2): a HashSync
// whose header names this archive's lineage (archive uuid, storage uuid). A resync also names the base state: the
// destination drops its diffs and restored images and streams the chunk hashes of its raw base image, and this side
// compares its own base image. A hash replication names instead the compared diff from the destination's latest
// snapshot to one of this archive's clean snapshots: the destination streams the hashes of its latest snapshot and
// this side compares that snapshot read virtually. Either way the chunks that differ go to the destination.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { WalbError } from '../common/errors';
import type { Promised } from '../common/grpc';
import {
  differingChunks,
  fileImage,
  virtualImage,
  type CompareOp,
  type ComparedImage,
} from '../common/hash-compare';
import type { Logger } from '../common/log';
import { diffText, type MetaDiff } from '../common/meta';
import { runTransfer, type TransferResult } from '../common/transfer';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { HashSyncHeader } from '../generated/walb/v1/HashSyncHeader';
import type { HashSyncRequest } from '../generated/walb/v1/HashSyncRequest';
import { native } from '../native';
import { wireDiff } from '../proxy/wdiff-sender';
import { restoreChain } from './policy';
import type { ArchiveVolumeStore } from './volume-store';

/** Bytes per hashed chunk of a resync or a hash replication, as a hash backup's default (docs/formats.md §7). */
export const RESYNC_CHUNK = 64 << 10;
/** The default longest wait for the destination (its answer, room to send) before the step fails as UNAVAILABLE. */
const IDLE_TIMEOUT_MS = 60_000;

export interface ResyncOptions extends CompareOp {
  /** Bytes hashed and compared at a time (default RESYNC_CHUNK). */
  chunkSize?: number;
  /** Read rate limit of the source's image [bytes/s], 0 = none. */
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
  const base = store.base;
  if (!base)
    throw new WalbError('FAILED_PRECONDITION', `volume ${store.volume} has no base image to resync from`);
  const fh = await fs.promises.open(store.baseImage, 'r');
  try {
    const { result, sent } = await sendComparison(
      store,
      destination,
      fileImage(store.baseImage, fh),
      {
        timestamp: base.timestamp,
        replica: {
          archiveUuid: store.archiveUuid,
          storageUuid: store.storageUuid,
          base: { snapB: base.snapB, snapE: base.snapE, timestamp: base.timestamp },
        },
      },
      // The destination takes the lineage from the header; the end only closes the scan.
      base.snapB,
      opts,
    );
    if (result.ok)
      deps.log('info', 'resync-sent', {
        volume: store.volume,
        sentBytes: sent,
        archiveUuid: store.archiveUuid,
      });
    return result;
  } finally {
    await fh.close();
  }
}

/**
 * One hash replication (docs/servers.md §7.7.2): the compared diff `d` (policy.ts nextReplicationStep) from the
 * destination's latest snapshot to this archive's clean snapshot |d.snapE.B|, which is read virtually (the base
 * image and the diffs up to it). Resolves once the destination acknowledged (the diff durable in its chain), or
 * with its refusal. The diffs read must stay: the caller holds the volume's replication action.
 */
export async function hashReplicaStep(
  deps: { log: Logger },
  store: ArchiveVolumeStore,
  destination: Promised<ArchiveClient>,
  d: MetaDiff,
  opts: ResyncOptions,
): Promise<TransferResult> {
  const chain = restoreChain(store.volume, store, d.snapE.gidB);
  const image = new native.VirtualFull(
    store.baseImage,
    chain.map((c) => store.diffPath(c)),
  );
  try {
    const { result, sent } = await sendComparison(
      store,
      destination,
      virtualImage(image),
      {
        timestamp: d.timestamp,
        replica: { archiveUuid: store.archiveUuid, storageUuid: store.storageUuid },
        diff: wireDiff(d),
      },
      d.snapE,
      opts,
    );
    if (result.ok)
      deps.log('info', 'repl-hash-sent', { volume: store.volume, diff: diffText(d), sentBytes: sent });
    return result;
  } finally {
    image.close();
  }
}

/** A HashSync to the destination: the header with a new seed, the chunks of `image` that differ, the end. */
async function sendComparison(
  store: ArchiveVolumeStore,
  destination: Promised<ArchiveClient>,
  image: ComparedImage,
  header: Pick<HashSyncHeader, 'timestamp' | 'replica' | 'diff'>,
  endSnapshot: { gidB: number; gidE: number },
  opts: ResyncOptions,
): Promise<{ result: TransferResult; sent: number }> {
  const chunkSize = opts.chunkSize ?? RESYNC_CHUNK;
  const seed = crypto.randomInt(2 ** 47);
  const size = store.sizeLb * 512;
  let sent = 0;
  const result = await runTransfer(
    destination.HashSync(),
    { header: { volume: store.volume, size: store.sizeLb, chunkSize, seed, ...header } },
    async function* (_accepted, reply): AsyncIterable<HashSyncRequest> {
      const spec = { chunkSize, seed, bytesPerSec: opts.bytesPerSec ?? 0 };
      for await (const m of differingChunks(image, size, spec, reply, opts)) {
        sent += m.length;
        yield m.message as unknown as HashSyncRequest;
      }
    },
    { end: { snapshot: endSnapshot, storageUuid: store.storageUuid } },
    { idleTimeoutMs: opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS },
  );
  return { result, sent };
}
