// The transfers the archive receives (docs/servers.md §3.6, §7.2-7.4): FullSync, a full backup from a storage, its
// bytes through the bulk path or the stream, and SendWdiff, a wdiff from a proxy. The policy answers the header;
// the volume store writes the bytes and makes them durable before the transfer is acknowledged.
import crypto from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { WalbError } from '../common/errors';
import { diff, snap, snapText, type MetaSnap } from '../common/meta';
import { serveTransfer } from '../common/transfer';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { FullSyncRequest__Output } from '../generated/walb/v1/FullSyncRequest';
import type { TransferReply } from '../generated/walb/v1/TransferReply';
import type { WdiffRequest__Output } from '../generated/walb/v1/WdiffRequest';
import type { ArchiveContext } from './context';
import { fullSyncBytesPath, fullSyncRejection, wdiffRejection } from './policy';

type Stream<Req> = grpc.ServerDuplexStream<Req, TransferReply>;

export function transferHandlers(ctx: ArchiveContext): Pick<ArchiveHandlers, 'FullSync' | 'SendWdiff'> {
  return {
    FullSync: (call) => void receiveFullSync(ctx, call),
    SendWdiff: (call) => void receiveWdiff(ctx, call),
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
      log('info', 'full-sync-done', { volume: h.volume, bytes, path, base: snapText(snapshot!) });
    },
  });
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
      return { ...h, d };
    },
    endOf: (m) => m.end ?? undefined,
    check: (h) => {
      const v = volumes.find(h.volume);
      return wdiffRejection(v && volumes.facts(v), h);
    },
    receive: async (h, transfer) => {
      const v = volumes.get(h.volume);
      const store = volumes.store(v);
      await v.state.transact('WdiffRecv', async () => {
        transfer.accept();
        await store.receiveDiff(wdiffBytes(transfer.data()), h.d);
      });
      log('info', 'wdiff-received', {
        volume: h.volume,
        diff: `${snapText(h.d.snapB)}-->${snapText(h.d.snapE)}`,
      });
    },
  });
}

async function* wdiffBytes(messages: AsyncIterable<WdiffRequest__Output>): AsyncIterable<Buffer> {
  for await (const m of messages) {
    if (!m.data) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a wdiff transfer');
    yield m.data;
  }
}
