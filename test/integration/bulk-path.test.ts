// The native bulk path of full backups (addon src/bulk/): a C++ gRPC sender and receiver. It must speak
// ArchiveBulk.FullSyncBulk as bulk.proto defines it, write the bytes where they belong, and fail with clear
// codes on bad input, unknown tokens, hung peers and cancellation.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProto, startGrpcServer, stopGrpcServer } from '../../src/common/grpc';
import { FULL_SYNC_BULK } from '../../src/common/transfer';
import type { ProtoGrpcType as BulkProto } from '../../src/generated/bulk';
import type { ArchiveBulkHandlers } from '../../src/generated/walb/v1/ArchiveBulk';
import type { FullSyncBulkRequest__Output } from '../../src/generated/walb/v1/FullSyncBulkRequest';
import { native, type BulkReceiver } from '../../src/native';
import { makeTempDir, removeDir } from '../temp-files';
import { ServerProc, freePort } from '../system-harness';
import { waitUntil } from '../waiting';

const MiB = 1 << 20;

/** A volume image of `mib` MiB whose even MiBs are random and odd ones zero. */
function volumeWithHoles(dir: string, mib: number): string {
  const file = path.join(dir, 'volume.img');
  const img = Buffer.alloc(mib * MiB);
  for (let i = 0; i < mib; i += 2) crypto.randomFillSync(img, i * MiB, MiB);
  fs.writeFileSync(file, img);
  return file;
}

function emptyImage(dir: string, name: string, bytes: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

async function withReceiver(t: { teardown(f: () => void): void }): Promise<{ r: BulkReceiver; dir: string }> {
  const dir = makeTempDir('bulk');
  const r = new native.BulkReceiver({ listen: '127.0.0.1:0', method: FULL_SYNC_BULK });
  t.teardown(() => {
    r.close();
    removeDir(dir);
  });
  return { r, dir };
}

/** A grpc-js server of ArchiveBulk built from bulk.proto, to check the native sender against the proto. */
async function grpcJsReceiver(
  implementation: ArchiveBulkHandlers,
): Promise<{ server: grpc.Server; port: number }> {
  const { proto } = loadProto<BulkProto>('walb/v1/bulk.proto');
  return startGrpcServer(
    '127.0.0.1:0',
    [],
    [{ name: 'walb.v1.ArchiveBulk', definition: proto.walb.v1.ArchiveBulk.service, implementation }],
  );
}

test('the bulk path writes a volume into the expected file byte for byte and skips its zero bulks', async (t) => {
  const { r, dir } = await withReceiver(t);
  const src = volumeWithHoles(dir, 9);
  const dst = emptyImage(dir, 'base.img', 9 * MiB);
  r.expect('tok', { path: dst, size: 9 * MiB, syncEveryBytes: 2 * MiB });
  const res = await new native.BulkSender({
    target: `127.0.0.1:${r.port()}`,
    method: FULL_SYNC_BULK,
    token: 'tok',
    path: src,
    size: 9 * MiB,
  }).run();
  t.deepEqual(res, { scanned: 9 * MiB, sent: 5 * MiB });
  // Synced after MiB 0 and 2 (below 3 MiB), then after 4 and 6 (below 7 MiB); MiB 8 is synced by the caller.
  t.deepEqual(r.outcome('tok'), { state: 'done', bytes: 5 * MiB, durable: 7 * MiB });
  t.true(fs.readFileSync(dst).equals(fs.readFileSync(src)));
  // The holes stay holes: only the written MiBs take space.
  t.true(fs.statSync(dst).blocks * 512 <= 6 * MiB);
});

test('a send from an offset writes only the bytes from there, and the receiver tells what is durable as it goes', async (t) => {
  const { r, dir } = await withReceiver(t);
  const src = volumeWithHoles(dir, 9);
  const dst = emptyImage(dir, 'base.img', 9 * MiB);
  r.expect('tok', { path: dst, size: 9 * MiB, syncEveryBytes: MiB });
  const seen: number[] = [];
  const res = await new native.BulkSender({
    target: `127.0.0.1:${r.port()}`,
    method: FULL_SYNC_BULK,
    token: 'tok',
    path: src,
    size: 9 * MiB,
    from: 4 * MiB,
  }).run((done) => seen.push(done));
  t.deepEqual(res, { scanned: 9 * MiB, sent: 3 * MiB }, 'MiB 4, 6 and 8');
  t.true(
    seen.every((d) => d > 4 * MiB),
    'progress is the offset reached',
  );
  t.deepEqual(r.outcome('tok'), { state: 'done', bytes: 3 * MiB, durable: 9 * MiB });
  const got = fs.readFileSync(dst);
  const want = fs.readFileSync(src);
  t.true(got.subarray(4 * MiB).equals(want.subarray(4 * MiB)));
  t.true(got.subarray(0, 4 * MiB).equals(Buffer.alloc(4 * MiB)), 'nothing before the start offset');
  for (const from of [100, 10 * MiB])
    await t.throwsAsync(
      new native.BulkSender({
        target: `127.0.0.1:${r.port()}`,
        method: FULL_SYNC_BULK,
        token: 'tok',
        path: src,
        size: 9 * MiB,
        from,
      }).run(),
      { code: 'INVALID_ARGUMENT', message: /start offset/ },
    );
});

test('the native sender speaks ArchiveBulk.FullSyncBulk as bulk.proto defines it', async (t) => {
  const dir = makeTempDir('bulk-proto');
  const got: FullSyncBulkRequest__Output[] = [];
  const impl: ArchiveBulkHandlers = {
    FullSyncBulk: (call, cb) => {
      call.on('data', (m: FullSyncBulkRequest__Output) => got.push(m));
      call.on('end', () =>
        cb(null, { bytes: got.reduce((a, m) => a + (m.data ? m.data.data.length : 0), 0) }),
      );
    },
  };
  const { server, port } = await grpcJsReceiver(impl);
  try {
    const src = volumeWithHoles(dir, 3);
    const res = await new native.BulkSender({
      target: `127.0.0.1:${port}`,
      method: FULL_SYNC_BULK,
      token: 'abc',
      path: src,
      size: 3 * MiB - 512,
      bulk: MiB,
    }).run();
    t.is(res.sent, 2 * MiB - 512);
    t.is(got[0].token, 'abc');
    const bulks = got.slice(1).map((m) => ({ offset: Number(m.data!.offset), length: m.data!.data.length }));
    t.deepEqual(bulks, [
      { offset: 0, length: MiB },
      { offset: 2 * MiB, length: MiB - 512 },
    ]);
    t.true(got[2].data!.data.equals(fs.readFileSync(src).subarray(2 * MiB, 3 * MiB - 512)));
  } finally {
    await stopGrpcServer(server);
    removeDir(dir);
  }
});

test('the native receiver takes FullSyncBulk from a grpc-js client encoding bulk.proto', async (t) => {
  const { r, dir } = await withReceiver(t);
  const dst = emptyImage(dir, 'base.img', 4096);
  r.expect('k', { path: dst, size: 4096 });
  const { definition } = loadProto('walb/v1/bulk.proto');
  const Client = grpc.makeGenericClientConstructor(
    definition['walb.v1.ArchiveBulk'] as grpc.ServiceDefinition,
    'ArchiveBulk',
  );
  const client = new Client(`127.0.0.1:${r.port()}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<
      string,
      (
        cb: (err: grpc.ServiceError | null, res: { bytes: number }) => void,
      ) => grpc.ClientWritableStream<unknown>
    >;
  try {
    const reply = await new Promise<{ bytes: number }>((resolve, reject) => {
      const call = client.FullSyncBulk((err, res) => (err ? reject(err) : resolve(res)));
      call.write({ token: 'k' });
      call.write({ data: { offset: 1024, data: Buffer.alloc(512, 7) } });
      call.end();
    });
    t.is(Number(reply.bytes), 512);
    const img = fs.readFileSync(dst);
    t.true(img.subarray(1024, 1536).equals(Buffer.alloc(512, 7)));
    t.is(
      img.subarray(0, 1024).find((b) => b !== 0),
      undefined,
    );
  } finally {
    client.close();
  }
});

test('a bulk outside the expected size fails the send with INVALID_ARGUMENT, and the receiver says why', async (t) => {
  const { r, dir } = await withReceiver(t);
  const src = volumeWithHoles(dir, 1);
  r.expect('small', { path: emptyImage(dir, 'small.img', 4096), size: 4096 });
  const err = await t.throwsAsync(
    new native.BulkSender({
      target: `127.0.0.1:${r.port()}`,
      method: FULL_SYNC_BULK,
      token: 'small',
      path: src,
      size: MiB,
    }).run(),
  );
  t.is((err as NodeJS.ErrnoException).code, 'INVALID_ARGUMENT');
  t.regex(err!.message, /outside the volume/);
  t.is(r.outcome('small').state, 'failed');
});

test('an unknown token is refused with NOT_FOUND, and a token cannot be used twice', async (t) => {
  const { r, dir } = await withReceiver(t);
  const src = volumeWithHoles(dir, 1);
  const send = (token: string) =>
    new native.BulkSender({
      target: `127.0.0.1:${r.port()}`,
      method: FULL_SYNC_BULK,
      token,
      path: src,
      size: MiB,
    }).run();
  t.is(((await t.throwsAsync(send('nobody'))) as NodeJS.ErrnoException).code, 'NOT_FOUND');
  r.expect('once', { path: emptyImage(dir, 'once.img', MiB), size: MiB });
  await send('once');
  t.is(((await t.throwsAsync(send('once'))) as NodeJS.ErrnoException).code, 'INVALID_ARGUMENT');
});

test('a receiver that accepts the connection but never answers fails the send with UNAVAILABLE after its timeout', async (t) => {
  const dir = makeTempDir('bulk-hung');
  const sockets: net.Socket[] = [];
  const blackHole = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
  try {
    const started = Date.now();
    const err = await t.throwsAsync(
      new native.BulkSender({
        target: `127.0.0.1:${(blackHole.address() as net.AddressInfo).port}`,
        method: FULL_SYNC_BULK,
        token: 't',
        path: volumeWithHoles(dir, 1),
        size: MiB,
        timeoutSec: 1,
      }).run(),
    );
    t.is((err as NodeJS.ErrnoException).code, 'UNAVAILABLE');
    t.regex(err!.message, /did not answer within 1 s/);
    t.true(Date.now() - started < 10_000);
  } finally {
    for (const s of sockets) s.destroy();
    blackHole.close();
    removeDir(dir);
  }
});

test('a receiver that takes the bulks but never gives its final answer fails the send with UNAVAILABLE, not CANCELLED', async (t) => {
  const dir = makeTempDir('bulk-silent');
  // Reads everything, answers nothing.
  const impl: ArchiveBulkHandlers = {
    FullSyncBulk: (call) => call.on('data', () => undefined),
  };
  const { server, port } = await grpcJsReceiver(impl);
  try {
    const err = await t.throwsAsync(
      new native.BulkSender({
        target: `127.0.0.1:${port}`,
        method: FULL_SYNC_BULK,
        token: 't',
        path: volumeWithHoles(dir, 2),
        size: 2 * MiB,
        timeoutSec: 1,
      }).run(),
    );
    t.is((err as NodeJS.ErrnoException).code, 'UNAVAILABLE');
    t.regex(err!.message, /did not answer within 6 s \(its final answer\)/);
  } finally {
    await stopGrpcServer(server, 0);
    removeDir(dir);
  }
});

test('a send reports progress; cancel stops it with CANCELLED, and forget cancels the receiving stream', async (t) => {
  const { r, dir } = await withReceiver(t);
  const src = volumeWithHoles(dir, 8);
  const start = (token: string) => {
    r.expect(token, { path: emptyImage(dir, `${token}.img`, 8 * MiB), size: 8 * MiB });
    // 1 MiB/s: the 8 MiB take about 8 s, so the cancel lands in the middle even on a loaded machine.
    return new native.BulkSender({
      target: `127.0.0.1:${r.port()}`,
      method: FULL_SYNC_BULK,
      token,
      path: src,
      size: 8 * MiB,
      bytesPerSec: MiB,
    });
  };
  const a = start('a');
  let progress = { done: 0, total: 0 };
  const running = a.run((done, total) => (progress = { done, total }));
  await waitUntil(() => progress.done > 0, 'progress of the send');
  t.true(progress.done < 8 * MiB);
  t.is(progress.total, 8 * MiB);
  a.cancel();
  t.is(((await t.throwsAsync(running)) as NodeJS.ErrnoException).code, 'CANCELLED');

  const b = start('b');
  const runningB = b.run();
  await waitUntil(() => r.outcome('b').state === 'running', 'the receiving stream of b');
  r.forget('b');
  const err = (await t.throwsAsync(runningB)) as NodeJS.ErrnoException;
  t.not(err.code, undefined);
  t.is(r.outcome('b').state, 'failed'); // forgotten: unknown from now on
});

test('a second bulk receiver cannot take a port another one listens on (no silent port sharing)', async (t) => {
  const { r } = await withReceiver(t);
  const err = t.throws(
    () => new native.BulkReceiver({ listen: `127.0.0.1:${r.port()}`, method: FULL_SYNC_BULK }),
  );
  t.is((err as NodeJS.ErrnoException).code, 'UNAVAILABLE');
});

test('an archive whose bulk port is taken does not start, and says which setting to change', async (t) => {
  const dir = makeTempDir('bulk-taken');
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as net.AddressInfo).port;
  const archive = new ServerProc('walb-archive', path.join(dir, 'a'), await freePort(), [
    '--bulk-listen',
    `127.0.0.1:${port}`,
  ]);
  try {
    const err = await t.throwsAsync(archive.start());
    t.regex(err!.message, /exited: .*bulkListen: cannot listen on 127\.0\.0\.1:\d+/s);
    t.is(archive.proc!.exitCode, 1);
  } finally {
    await archive.kill();
    taken.close();
    removeDir(dir);
  }
});
