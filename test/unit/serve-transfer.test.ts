// The receiving side of a transfer (serveTransfer) against the sending side (runTransfer), in one process over
// loopback gRPC: header, typed rejection or BUSY, data, end, and `done` only once the receiver has finished.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { WalbError, errorCode } from '../../src/common/errors';
import { ForegroundSlots } from '../../src/common/foreground';
import { connect, fromServiceError, loadProto, startGrpcServer, stopGrpcServer } from '../../src/common/grpc';
import { silentLog } from '../../src/common/log';
import { runTransfer, serveTransfer, type Rejection } from '../../src/common/transfer';
import type { ProtoGrpcType as ArchiveProto } from '../../src/generated/archive';
import type { ArchiveHandlers } from '../../src/generated/walb/v1/Archive';
import type { WdiffHeader__Output } from '../../src/generated/walb/v1/WdiffHeader';
import type { WdiffRequest } from '../../src/generated/walb/v1/WdiffRequest';

interface Receiver {
  slots: ForegroundSlots;
  check?: (h: WdiffHeader__Output) => Rejection | undefined;
  /** Fails the receive after the data, before `done`. */
  failWith?: Error;
}

/** A wdiff receiver on loopback that records what it got. */
async function receiver(r: Receiver) {
  const got = { headers: [] as string[], data: [] as string[], ends: 0, slotsDuringReceive: -1 };
  const { definition, proto } = loadProto<ArchiveProto>('walb/v1/archive.proto');
  const implementation = {
    SendWdiff: (call) =>
      void serveTransfer(call, {
        kind: 'wdiff transfer',
        log: silentLog,
        slots: r.slots,
        header: (m) => m.header ?? undefined,
        endOf: (m) => m.end ?? undefined,
        check: (h) => r.check?.(h),
        receive: async (h, transfer) => {
          got.headers.push(h.volume);
          got.slotsDuringReceive = r.slots.inUse;
          transfer.accept();
          for await (const m of transfer.data()) got.data.push(m.data!.toString());
          transfer.end();
          got.ends++;
          if (r.failWith) throw r.failWith;
        },
      }),
  } as ArchiveHandlers;
  const { server, port } = await startGrpcServer(
    '127.0.0.1:0',
    [definition],
    [{ name: 'walb.v1.Archive', definition: proto.walb.v1.Archive.service, implementation }],
  );
  const client = connect(proto.walb.v1.Archive, `127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const send = (chunks: string[]) =>
    runTransfer<WdiffRequest>(
      client.SendWdiff(),
      { header: { volume: 'vol' } },
      async function* () {
        for (const c of chunks) yield { data: Buffer.from(c) };
      },
      { end: {} },
      { idleTimeoutMs: 5000 },
    );
  return { got, send, client, close: () => (client.close(), stopGrpcServer(server)) };
}

test('an accepted transfer delivers every data message in order, the end, then done', async (t) => {
  const slots = new ForegroundSlots(1);
  const r = await receiver({ slots });
  try {
    t.deepEqual(await r.send(['a', 'bc', 'def']), { ok: true });
    t.deepEqual(r.got, { headers: ['vol'], data: ['a', 'bc', 'def'], ends: 1, slotsDuringReceive: 1 });
    t.is(slots.inUse, 0, 'the slot is given back');
  } finally {
    await r.close();
  }
});

test('a header the receiver refuses gets its typed rejection and nothing is received', async (t) => {
  const r = await receiver({
    slots: new ForegroundSlots(1),
    check: (h) => ({ reason: 'TOO_OLD_DIFF', message: `${h.volume} has it` }),
  });
  try {
    t.deepEqual(await r.send(['a']), { ok: false, reason: 'TOO_OLD_DIFF', message: 'vol has it' });
    t.deepEqual(r.got.headers, []);
  } finally {
    await r.close();
  }
});

test('with every foreground slot taken, a transfer is rejected as BUSY', async (t) => {
  const slots = new ForegroundSlots(1);
  const r = await receiver({ slots });
  const hold = slots.take();
  try {
    const result = await r.send(['a']);
    t.like(result, { ok: false, reason: 'BUSY' });
    t.deepEqual(r.got.headers, []);
    hold();
    t.deepEqual(await r.send(['a']), { ok: true }, 'a free slot takes the next one');
  } finally {
    await r.close();
  }
});

test('a receive that fails after the data is no done: the sender gets the stable code, the slot comes back', async (t) => {
  const slots = new ForegroundSlots(1);
  const r = await receiver({ slots, failWith: new WalbError('CORRUPTION', 'the wdiff does not verify') });
  try {
    const err = await t.throwsAsync(r.send(['a']));
    t.is(errorCode(err), 'CORRUPTION');
    t.regex(err.message, /does not verify/);
    t.is(slots.inUse, 0);
  } finally {
    await r.close();
  }
});

/** Sends `messages` raw, ends the stream and resolves with the error the receiver ended it with. */
function rawSend(
  stream: grpc.ClientDuplexStream<WdiffRequest, unknown>,
  messages: WdiffRequest[],
): Promise<Error> {
  return new Promise((resolve) => {
    stream.on('data', () => undefined);
    stream.on('error', (e: grpc.ServiceError) => resolve(fromServiceError(e)));
    for (const m of messages) stream.write(m);
    stream.end();
  });
}

test('a stream that stops before its end message is TRUNCATED and no done is sent', async (t) => {
  const slots = new ForegroundSlots(1);
  const r = await receiver({ slots });
  try {
    const err = await rawSend(r.client.SendWdiff(), [
      { header: { volume: 'vol' } },
      { data: Buffer.from('a') },
    ]);
    t.is(errorCode(err), 'TRUNCATED');
    t.regex(err.message, /wdiff transfer ended before its end message/);
    t.is(r.got.ends, 0);
    t.is(slots.inUse, 0);
  } finally {
    await r.close();
  }
});

test('a stream that does not start with its header is INVALID_ARGUMENT', async (t) => {
  const r = await receiver({ slots: new ForegroundSlots(1) });
  try {
    const err = await rawSend(r.client.SendWdiff(), [{ data: Buffer.from('a') }]);
    t.is(errorCode(err), 'INVALID_ARGUMENT');
    t.regex(err.message, /starts with its header/);
  } finally {
    await r.close();
  }
});
