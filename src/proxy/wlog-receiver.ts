// The SendWlog stream: a storage's wlog received as docs/servers.md §7.1 step 6 says. The policy takes or rejects
// the header; in WlogRecv the stream is written to a temporary wlog, converted into an indexed wdiff, kept under
// its name and linked into every archive's queue by the store, all durable before the storage gets done; then
// every archive's send is queued after its delay.
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { WalbError } from '../common/errors';
import { diffFileName } from '../common/meta';
import { serveTransfer } from '../common/transfer';
import { buildWlogHeader } from '../common/wlog-header';
import type { MetaDiff__Output } from '../generated/walb/v1/MetaDiff';
import type { ProxyHandlers } from '../generated/walb/v1/Proxy';
import type { TransferReply } from '../generated/walb/v1/TransferReply';
import type { WlogHeader__Output } from '../generated/walb/v1/WlogHeader';
import type { WlogRequest__Output } from '../generated/walb/v1/WlogRequest';
import { native } from '../native';
import { wlogDiff, wlogRejection } from './policy';
import type { ProxyContext } from './server';
import type { ProxyVolume } from './volume';

export function wlogReceiver(ctx: ProxyContext): ProxyHandlers['SendWlog'] {
  return (call: grpc.ServerDuplexStream<WlogRequest__Output, TransferReply>) =>
    void serveTransfer(call, {
      kind: 'wlog transfer',
      log: ctx.log,
      slots: ctx.foreground,
      header: (m) => m.header ?? undefined,
      endOf: (m) => m.end ?? undefined,
      check: (h) => wlogRejection(h.volume, ctx.volumes.get(h.volume)?.state),
      receive: async (h, transfer) => {
        const v = ctx.volumes.get(h.volume)!;
        const name = await v.state.transact('WlogRecv', async () => {
          transfer.accept();
          return keepWlog(v, h, transfer.data(), () => transfer.end().diff);
        });
        v.lastWlogMs = Date.now();
        ctx.sender.sendAfterWlog(v);
        ctx.log('info', 'wlog-received', { volume: h.volume, wdiff: name });
      },
    });
}

/** Writes the stream to a temporary wlog, keeps it as an indexed wdiff and returns the wdiff's name. */
async function keepWlog(
  v: ProxyVolume,
  h: WlogHeader__Output,
  data: AsyncIterable<WlogRequest__Output>,
  endDiff: () => MetaDiff__Output | null,
): Promise<string> {
  const tmpWlog = v.store.stagingPath('wlog');
  try {
    const fh = await fs.promises.open(tmpWlog, 'w');
    try {
      await fh.write(
        buildWlogHeader({ pbs: h.pbs, salt: h.salt, uuid: h.storageUuid, beginLsid: h.beginLsid }),
      );
      for await (const m of data) {
        if (!m.packs) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a wlog transfer');
        await fh.write(m.packs);
      }
    } finally {
      await fh.close();
    }
    const d = wlogDiff(endDiff());
    const tmpWdiff = v.store.stagingPath('wdiff');
    await native.wlogToWdiff([tmpWlog], tmpWdiff, { indexed: true });
    const name = diffFileName({ ...d, dataSize: 0 });
    await v.store.keepWdiff(tmpWdiff, name);
    await v.store.raiseSize(Number(h.size));
    return name;
  } finally {
    await v.store.discard(tmpWlog);
  }
}
