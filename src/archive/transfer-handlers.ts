// The transfers the archive receives (docs/servers.md §3.6, §7.2-7.4, §7.6, §7.7): FullSync, a full backup from a
// storage, its bytes through the bulk path or the stream, or a full replication from a source archive (resumable);
// SendWdiff, a wdiff from a proxy or a replication's diff step; HashSync, a hash backup from a storage, a resync
// or a hash replication from a source archive. The policy answers the header; the volume store writes the bytes
// and makes them durable before the transfer is acknowledged.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { WalbError } from '../common/errors';
import { PhaseTimes } from '../common/log';
import { diff, snap, snapText, type MetaSnap, type MetaState } from '../common/meta';
import { native } from '../native';
import { serveTransfer, type IncomingTransfer } from '../common/transfer';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { FullSyncEnd__Output } from '../generated/walb/v1/FullSyncEnd';
import type { FullSyncHeader__Output } from '../generated/walb/v1/FullSyncHeader';
import type { FullSyncRequest__Output } from '../generated/walb/v1/FullSyncRequest';
import type { MetaState__Output } from '../generated/walb/v1/MetaState';
import type { ReplicaOf__Output } from '../generated/walb/v1/ReplicaOf';
import type { HashSyncEnd__Output } from '../generated/walb/v1/HashSyncEnd';
import type { HashSyncHeader__Output } from '../generated/walb/v1/HashSyncHeader';
import type { HashSyncRequest__Output } from '../generated/walb/v1/HashSyncRequest';
import type { TransferReply } from '../generated/walb/v1/TransferReply';
import type { WdiffRequest__Output } from '../generated/walb/v1/WdiffRequest';
import type { ArchiveContext, ArchiveVolume } from './context';
import {
  fullSyncBytesPath,
  fullSyncRejection,
  hashReplicaRejection,
  hashSyncRejection,
  latestSnap,
  resyncRejection,
  wdiffRejection,
  type HashReplicaOffer,
  type ResyncOffer,
} from './policy';
import type { ReplicaBase } from './volume-store';

type Stream<Req> = grpc.ServerDuplexStream<Req, TransferReply>;
type HashTransfer = IncomingTransfer<HashSyncRequest__Output, HashSyncEnd__Output>;

export function transferHandlers(
  ctx: ArchiveContext,
): Pick<ArchiveHandlers, 'FullSync' | 'SendWdiff' | 'HashSync'> {
  return {
    FullSync: (call) => void receiveFullSync(ctx, call),
    SendWdiff: (call) => void receiveWdiff(ctx, call),
    HashSync: (call) => void receiveHashSync(ctx, call),
  };
}

/** Image bytes whose chunk hashes go in one message (at least one chunk): 64 hashes at the default chunk size. */
const HASHED_PER_MESSAGE = 16 << 20;

/**
 * The chunk hashes of [0, size) as TransferReply.hashes in address order, about HASHED_PER_MESSAGE of image per
 * message, one batch hashed ahead so that the disk works while the last one is on the wire.
 */
async function sendChunkHashes(
  transfer: HashTransfer,
  size: number,
  chunk: number,
  hash: (offset: number, length: number) => Promise<{ chunks?: Buffer }>,
): Promise<void> {
  const step = Math.max(1, Math.floor(HASHED_PER_MESSAGE / chunk)) * chunk;
  const batch = (offset: number) => hash(offset, Math.min(step, size - offset));
  let next = batch(0);
  for (let offset = 0; offset < size; offset += step) {
    const r = await next;
    if (offset + step < size) next = batch(offset + step);
    await transfer.send({ hashes: { offset, hashes: r.chunks! } });
  }
}

/**
 * HashSync (docs/servers.md §7.6, §7.7.1, §7.7.2): a hash backup from a storage; from a source archive, when the
 * header names the replica it comes from, a hash replication when it also names the compared diff, else a resync.
 */
function receiveHashSync(ctx: ArchiveContext, call: Stream<HashSyncRequest__Output>): Promise<void> {
  const { volumes, log } = ctx;
  return serveTransfer(call, {
    kind: 'hash sync',
    log,
    slots: ctx.foreground,
    header: (m) => {
      const h = m.header;
      if (!h) return undefined;
      if (h.replica && h.diff) return { ...h, hashReplica: hashReplicaOffer(h), resync: undefined };
      return { ...h, hashReplica: undefined, resync: h.replica ? resyncOffer(h) : undefined };
    },
    endOf: (m) => (m.end?.snapshot ? m.end : undefined),
    check: (h) => {
      const v = volumes.find(h.volume);
      const busy = v ? ctx.busy(v) : [];
      if (h.hashReplica) return hashReplicaRejection(v && volumes.facts(v), busy, h.hashReplica);
      if (h.resync) return resyncRejection(v && volumes.facts(v), busy, h.resync);
      return hashSyncRejection(
        v && volumes.facts(v),
        { ...h, size: Number(h.size) },
        v?.state.runningActions() ?? [],
      );
    },
    receive: (h, transfer) =>
      h.hashReplica
        ? receiveHashReplica(ctx, h, h.hashReplica, transfer)
        : h.resync
          ? receiveResync(ctx, h, h.resync, transfer)
          : receiveHashBackup(ctx, h, transfer),
  });
}

/**
 * Hash backup from a storage (docs/servers.md §7.6): the latest snapshot compared (compareLatest); at the end, the
 * dirty diff latest → |gidB,gidE| joins the chain and the archive follows the storage's new log stream.
 */
async function receiveHashBackup(
  ctx: ArchiveContext,
  h: HashSyncHeader__Output,
  transfer: HashTransfer,
): Promise<void> {
  const { volumes, log } = ctx;
  const v = volumes.get(h.volume);
  const store = volumes.store(v);
  let added = { records: 0, fileBytes: 0 };
  let d: ReturnType<typeof diff> | undefined;
  await v.state.transact('HashSync', async () => {
    added = await compareLatest(v, h, transfer, async (from, file) => {
      const end = transfer.end();
      const to = snap(end.snapshot!.gidB, end.snapshot!.gidE);
      // Mergeable when the snapshot it starts from is dirty: a clean one stays restorable.
      d = diff(from, to, { isMergeable: from.gidB !== from.gidE, timestamp: Number(h.timestamp) });
      await store.finishHashSync(file, d, end.storageUuid);
    });
  });
  ctx.received('hash', h.volume, added.fileBytes);
  log('info', 'hash-sync-done', {
    volume: h.volume,
    diff: `${snapText(d!.snapB)}-->${snapText(d!.snapE)}`,
    records: added.records,
    bytes: added.fileBytes,
  });
}

/**
 * Hash replication from a source archive (docs/servers.md §7.7.2): in ReplSyncAsServer the latest snapshot is
 * compared with the source's snapshot the compared diff ends at (compareLatest); at the end the archive follows
 * the source's log stream, the compared diff joins the chain, and the diffs it covers are collected.
 */
async function receiveHashReplica(
  ctx: ArchiveContext,
  h: HashSyncHeader__Output,
  offer: HashReplicaOffer,
  transfer: HashTransfer,
): Promise<void> {
  const v = ctx.volumes.get(h.volume);
  const store = ctx.volumes.store(v);
  let added = { records: 0, fileBytes: 0 };
  await v.state.transact('ReplSyncAsServer', async () => {
    added = await compareLatest(v, h, transfer, async (_from, file) => {
      const end = transfer.end().snapshot!;
      if (end.gidB !== offer.d.snapE.gidB || end.gidE !== offer.d.snapE.gidE)
        throw new WalbError('INVALID_ARGUMENT', `the hash replication ends at |${end.gidB},${end.gidE}|`);
      await store.finishHashSync(file, offer.d, offer.storageUuid);
      await store.gc();
    });
  });
  ctx.received('replica', h.volume, added.fileBytes);
  ctx.log('info', 'repl-hash-received', {
    volume: h.volume,
    diff: `${snapText(offer.d.snapB)}-->${snapText(offer.d.snapE)}`,
    records: added.records,
    bytes: added.fileBytes,
  });
}

/**
 * The archive's half of a comparison with its latest snapshot (docs/servers.md §7.6 step 4, §7.7.2), inside the
 * caller's transaction: accept naming the latest snapshot; then, at once, the chunk hashes of that snapshot read
 * virtually (base + diffs, never restored) go out while the chunks that differ come in and are written as a sorted
 * wdiff; then `finish` gets the snapshot compared and the wdiff, complete and synced, to register. Any failure
 * drops the wdiff.
 */
async function compareLatest(
  v: ArchiveVolume,
  h: HashSyncHeader__Output,
  transfer: HashTransfer,
  finish: (from: MetaSnap, file: string) => Promise<void>,
): Promise<{ records: number; fileBytes: number }> {
  const store = v.store!;
  const size = Number(h.size) * 512;
  const chunk = h.chunkSize;
  const from = latestSnap(store.base!, store.diffs);
  const image = new native.VirtualFull(store.baseImage, store.latestChainFiles());
  const file = `${store.tempPath('hash')}.wdiff`;
  const writer = new native.SortedWdiffWriter(file, { compression: 'snappy' });
  try {
    transfer.accept({ latest: from });
    const sendHashes = () =>
      sendChunkHashes(transfer, size, chunk, (offset, length) =>
        image.hash({ offset, length, chunkSize: chunk, seed: h.seed, chunks: true }),
      );
    const receiveChunks = async () => {
      // One chunk is written while the next one arrives; the writer takes them in order.
      let writing: Promise<void> = Promise.resolve();
      try {
        for await (const m of transfer.data()) {
          checkNotForceStopped(v);
          const bulk = m.data;
          if (!bulk || bulk.offset + bulk.data.length > size)
            throw new WalbError('INVALID_ARGUMENT', 'a hash comparison sends chunks inside the volume');
          await writing;
          writing = writer.add(bulk.offset, bulk.data);
          // Its failure surfaces at the next await of it, not as an unhandled rejection meanwhile.
          writing.catch(() => undefined);
        }
        await writing;
      } finally {
        await writing.catch(() => undefined);
      }
    };
    // Both at once: the sender compares a batch while the next one is hashed here.
    await Promise.all([sendHashes(), receiveChunks()]);
    const added = await writer.close();
    await finish(from, file);
    return added;
  } catch (err) {
    writer.abort();
    await fs.promises.rm(file, { force: true });
    throw err;
  } finally {
    image.close();
  }
}

/**
 * Resync from a source archive (docs/servers.md §7.7.1): an Archived volume first drops its diffs and restored
 * images and commits SyncReady; then, in Resync, its base image takes the source's size, the hashes of the raw
 * base image go out while the chunks that differ come in and are written straight into it, and at the end the
 * image is synced and the source's base state and uuids are adopted, Archived. A failure in between leaves
 * SyncReady with a base image partly fixed, which a rerun fixes.
 */
async function receiveResync(
  ctx: ArchiveContext,
  h: HashSyncHeader__Output,
  offer: ResyncOffer,
  transfer: HashTransfer,
): Promise<void> {
  const { volumes, config, log } = ctx;
  const v = volumes.get(h.volume);
  const store = volumes.store(v);
  if (v.state.state === 'Archived')
    await v.state.transact('Resync', () => store.dropForResync(), 'SyncReady');
  let written = 0;
  await v.state.transact('Resync', async () => {
    await store.beginResync(offer.size);
    const size = offer.size * 512;
    const chunk = h.chunkSize;
    const writer = await store.baseImageWriter(offer.size, Math.max(1, config.fsyncIntervalMb) * 1048576);
    try {
      transfer.accept();
      // The batches hashed never overlap the chunks being written: those of a batch come after its hashes.
      const sendHashes = () =>
        sendChunkHashes(transfer, size, chunk, (offset, length) =>
          native.hashImage(store.baseImage, { offset, length, chunkSize: chunk, seed: h.seed, chunks: true }),
        );
      const receiveChunks = async () => {
        for await (const m of transfer.data()) {
          if (!m.data) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a resync');
          await writer.write(m.data.offset, m.data.data);
          written += m.data.data.length;
        }
      };
      await Promise.all([sendHashes(), receiveChunks()]);
    } finally {
      await writer.close();
    }
    // The policy refused a header without a base state.
    await store.finishResync({ ...offer, base: offer.base! });
  });
  ctx.received('resync', h.volume, written);
  log('info', 'resync-done', {
    volume: h.volume,
    base: snapText(offer.base!.snapB),
    archiveUuid: offer.archiveUuid,
    writtenBytes: written,
  });
}

/** A resync's header as the policy reads it, the base state as meta.ts spells it (snap_e absent = clean). */
function resyncOffer(h: HashSyncHeader__Output): ResyncOffer {
  const r = h.replica!;
  const b = r.base;
  return {
    volume: h.volume,
    size: Number(h.size),
    chunkSize: h.chunkSize,
    archiveUuid: r.archiveUuid,
    storageUuid: r.storageUuid,
    base: b?.snapB
      ? {
          snapB: snap(b.snapB.gidB, b.snapB.gidE),
          ...(b.snapE ? { snapE: snap(b.snapE.gidB, b.snapE.gidE) } : {}),
          timestamp: Number(b.timestamp),
        }
      : undefined,
  };
}

/** A hash replication's header as the policy reads it: the compared diff and the source's lineage. */
function hashReplicaOffer(h: HashSyncHeader__Output): HashReplicaOffer {
  const r = h.replica!;
  const { snapB, snapE } = h.diff!;
  if (!snapB || !snapE) throw new WalbError('INVALID_ARGUMENT', 'a hash replication names its diff');
  return {
    volume: h.volume,
    size: Number(h.size),
    chunkSize: h.chunkSize,
    storageUuid: r.storageUuid,
    d: diff(snap(snapB.gidB, snapB.gidE), snap(snapE.gidB, snapE.gidE), {
      isMergeable: h.diff!.mergeable,
      isCompDiff: h.diff!.compDiff,
      timestamp: Number(h.diff!.timestamp),
    }),
    replica: { archiveUuid: r.archiveUuid },
  };
}

/** Full backup from a storage: header, accept, bulks at their offsets, end, ack. */
function receiveFullSync(ctx: ArchiveContext, call: Stream<FullSyncRequest__Output>): Promise<void> {
  const { volumes, config, log } = ctx;
  return serveTransfer(call, {
    kind: 'full sync',
    log,
    slots: ctx.foreground,
    header: (m) => m.header ?? undefined,
    endOf: (m) => (m.end?.snapshot ? m.end : undefined),
    check: (h) => {
      const v = volumes.find(h.volume);
      return fullSyncRejection(v && volumes.facts(v), h);
    },
    receive: async (h, transfer) => {
      if (h.replica) return receiveFullReplication(ctx, h, replicaBase(h, h.replica), transfer);
      const v = volumes.get(h.volume);
      const store = volumes.store(v);
      const bulk = ctx.bulk();
      let snapshot: MetaSnap | undefined;
      let bytes = 0;
      let path: 'bulk' | 'stream' = 'stream';
      await v.state.transact('FullSync', async () => {
        const image = await store.beginFullSync(h.size);
        const syncEveryBytes = Math.max(1, config.fsyncIntervalMb) * 1048576;
        // With a bulk receiver the bytes go there and this stream only carries the end; without, they come here.
        const token = bulk ? crypto.randomBytes(16).toString('hex') : '';
        bulk?.expect(token, { path: image, size: h.size * 512, syncEveryBytes });
        transfer.accept(token ? { bulkPort: bulk!.port(), bulkToken: token } : {});
        const writer = await store.baseImageWriter(h.size, syncEveryBytes);
        try {
          for await (const m of transfer.data()) {
            if (v.state.stop === 'force-stopping') throw new WalbError('FAILED_PRECONDITION', 'stopped');
            if (!m.data) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a full sync');
            // Bulks on the stream: the sender could not reach the receiver; it must not write any more.
            if (token && bytes === 0) bulk?.forget(token);
            await writer.write(m.data.offset, m.data.data);
            bytes += m.data.data.length;
          }
          // The end message too: a force stop drops the base.
          if (v.state.stop === 'force-stopping') throw new WalbError('FAILED_PRECONDITION', 'stopped');
          const end = transfer.end();
          snapshot = snap(end.snapshot!.gidB, end.snapshot!.gidE);
          if (token) {
            const sent = Number(end.bulkBytes);
            path = fullSyncBytesPath(sent, bulk?.outcome(token));
            if (path === 'bulk') bytes += sent;
          }
        } finally {
          await writer.close();
          if (token) bulk?.forget(token);
        }
        await store.finishFullSync(snapshot!, Number(h.timestamp), h.storageUuid, h.size);
      });
      ctx.received('full', h.volume, bytes);
      log('info', 'full-sync-done', { volume: h.volume, bytes, path, base: snapText(snapshot!) });
    },
  });
}

/**
 * Full replication from a source archive (docs/servers.md §7.7): accept naming the offset to resume from (and the
 * bulk port when there is one), the source's base image from there — through the bulk receiver or on the stream —
 * with the resume point saved as it becomes durable, end; then the image takes the source's base state and uuids.
 */
async function receiveFullReplication(
  ctx: ArchiveContext,
  h: FullSyncHeader__Output,
  replica: ReplicaBase,
  transfer: IncomingTransfer<FullSyncRequest__Output, FullSyncEnd__Output>,
): Promise<void> {
  const v = ctx.volumes.get(h.volume);
  const store = ctx.volumes.store(v);
  const bulk = ctx.bulk();
  let bytes = 0;
  let resumed = 0;
  let path: 'bulk' | 'stream' = 'stream';
  await v.state.transact('FullSync', async () => {
    resumed = await store.beginFullReplication(replica);
    if (resumed > 0) ctx.log('info', 'full-repl-resumed', { volume: h.volume, offset: resumed });
    const syncEveryBytes = Math.max(1, ctx.config.fsyncIntervalMb) * 1048576;
    // One save of the resume point at a time, never backwards.
    let saved = resumed;
    let saving: Promise<void> = Promise.resolve();
    const durableBelow = (offset: number) => {
      if (offset <= saved) return saving;
      saved = offset;
      saving = saving.then(() => store.saveFullReplicationOffset(offset));
      return saving;
    };
    const token = bulk ? crypto.randomBytes(16).toString('hex') : '';
    bulk?.expect(token, { path: store.baseImage, size: replica.sizeLb * 512, syncEveryBytes });
    // The bulk receiver syncs on its own threads: what it made durable is saved every second.
    const poll = token ? setInterval(() => void durableBelow(bulk!.outcome(token).durable), 1000) : undefined;
    transfer.accept(
      token ? { resumeOffset: resumed, bulkPort: bulk!.port(), bulkToken: token } : { resumeOffset: resumed },
    );
    const writer = await store.baseImageWriter(replica.sizeLb, syncEveryBytes, durableBelow);
    try {
      for await (const m of transfer.data()) {
        checkNotForceStopped(v);
        if (!m.data) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a full replication');
        if (m.data.offset < resumed)
          throw new WalbError(
            'INVALID_ARGUMENT',
            `bulk at ${m.data.offset} before the resume offset ${resumed}`,
          );
        // Bulks on the stream: the source could not reach the receiver; it must not write any more.
        if (token && bytes === 0) bulk?.forget(token);
        await writer.write(m.data.offset, m.data.data);
        bytes += m.data.data.length;
      }
      checkNotForceStopped(v);
      const end = transfer.end();
      if (token) {
        const sent = Number(end.bulkBytes);
        path = fullSyncBytesPath(sent, bulk?.outcome(token));
        if (path === 'bulk') bytes += sent;
      }
    } finally {
      clearInterval(poll);
      await writer.close();
      if (token) bulk?.forget(token);
      await saving.catch(() => undefined);
    }
    await store.finishFullReplication(replica);
  });
  ctx.received('full', h.volume, bytes);
  ctx.log('info', 'full-repl-done', {
    volume: h.volume,
    bytes,
    path,
    resumedAt: resumed,
    base: snapText(replica.base.snapB),
  });
}

function checkNotForceStopped(v: ArchiveVolume): void {
  if (v.state.stop === 'force-stopping') throw new WalbError('FAILED_PRECONDITION', 'stopped');
}

/** What a replication's FullSync header says of the source's base image. */
function replicaBase(h: FullSyncHeader__Output, replica: ReplicaOf__Output): ReplicaBase {
  if (!replica.base?.snapB)
    throw new WalbError('INVALID_ARGUMENT', 'a full replication names its base state');
  return {
    archiveUuid: replica.archiveUuid,
    storageUuid: replica.storageUuid,
    base: metaState(replica.base),
    sizeLb: Number(h.size),
  };
}

function metaState(m: MetaState__Output): MetaState {
  const b = m.snapB!;
  const e = m.snapE;
  return {
    snapB: snap(Number(b.gidB), Number(b.gidE)),
    ...(e ? { snapE: snap(Number(e.gidB), Number(e.gidE)) } : {}),
    timestamp: Number(m.timestamp),
  };
}

/** wdiff from a proxy: header checked, accept or typed rejection, bytes, durable, ack. */
function receiveWdiff(ctx: ArchiveContext, call: Stream<WdiffRequest__Output>): Promise<void> {
  const { volumes, log } = ctx;
  return serveTransfer(call, {
    kind: 'wdiff transfer',
    log,
    slots: ctx.foreground,
    header: (m) => {
      const h = m.header;
      if (!h?.diff?.snapB || !h.diff.snapE) return undefined;
      const { snapB, snapE } = h.diff;
      const d = diff(snap(snapB.gidB, snapB.gidE), snap(snapE.gidB, snapE.gidE), {
        isMergeable: h.diff.mergeable,
        isCompDiff: h.diff.compDiff,
        timestamp: Number(h.diff.timestamp),
      });
      return { ...h, d, replica: h.replica ?? undefined };
    },
    endOf: (m) => m.end ?? undefined,
    check: (h) => {
      const v = volumes.find(h.volume);
      return wdiffRejection(v && volumes.facts(v), h);
    },
    receive: async (h, transfer) => {
      const v = volumes.get(h.volume);
      const store = volumes.store(v);
      // A replication's diff step (docs/servers.md §7.7): the destination follows the source's log stream.
      const replica = h.replica;
      let bytes = 0;
      const data = wdiffBytes(transfer.data(), (n) => (bytes += n));
      const phases = new PhaseTimes();
      await v.state.transact(replica ? 'ReplSyncAsServer' : 'WdiffRecv', async () => {
        transfer.accept();
        if (replica) await store.receiveReplicaDiff(data, h.d, replica.storageUuid, phases);
        else await store.receiveDiff(data, h.d, phases);
      });
      ctx.received(replica ? 'replica' : 'wdiff', h.volume, bytes);
      const diffName = `${snapText(h.d.snapB)}-->${snapText(h.d.snapE)}`;
      const fields = { volume: h.volume, diff: diffName, bytes, ms: phases.ms };
      if (replica) log('info', 'repl-diff-received', fields);
      else log('info', 'wdiff-received', fields);
    },
  });
}

async function* wdiffBytes(
  messages: AsyncIterable<WdiffRequest__Output>,
  count: (bytes: number) => void,
): AsyncIterable<Buffer> {
  for await (const m of messages) {
    if (!m.data) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a wdiff transfer');
    count(m.data.length);
    yield m.data;
  }
}
