// The backup group end to end, as real processes on loopback: walb-wdevd, walb-storage, walb-proxy, walb-archive.
// A full backup of a wdev in use, writes, a snapshot, and its restore on the archive equals the device, byte for
// byte.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as P from '../../src/nbd/protocol';
import type { Operation__Output } from '../../src/generated/walb/v1/Operation';
import { loadProto } from '../../src/common/grpc';
import * as grpc from '@grpc/grpc-js';
import type { ProtoGrpcType as StorageProto } from '../../src/generated/storage';
import { makeTempDir, removeDir } from '../helpers';
import { RawClient } from '../nbd-client';
import {
  ServerProc,
  archiveClient,
  call,
  freePort,
  operationsClient,
  proxyClient,
  until,
} from '../system-harness';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 32 << 20;

async function writeRandom(c: RawClient, image: Buffer, n: number, first: number): Promise<void> {
  let h = first;
  for (let i = 0; i < n; i++) {
    const len = 4096 * (1 + crypto.randomInt(64));
    const off = 4096 * crypto.randomInt((SIZE - len) / 4096);
    const data = crypto.randomBytes(len);
    data.copy(image, off);
    c.request(P.NBD_CMD_WRITE, h++, off, len, 0, data);
    if (i % 16 === 15)
      for (let k = 0; k < 16; k++) if ((await c.reply()).error) throw new Error('write failed');
  }
  for (let k = 0; k < n % 16; k++) if ((await c.reply()).error) throw new Error('write failed');
  if ((await c.simple(P.NBD_CMD_FLUSH, 999999, 0, 0)) !== 0) throw new Error('flush failed');
}

async function waitOp(ops: grpc.Client, id: string): Promise<Operation__Output> {
  let last: Operation__Output | undefined;
  await until(
    async () => (last = await call<Operation__Output>(ops, 'Get', { id })).state !== 'running',
    'operation',
    120_000,
  );
  return last!;
}

test('full backup of a wdev in use, writes, snapshot: the restored snapshot equals the device', async (t) => {
  const dir = makeTempDir('backup-group');
  const wdevd = new Wdevd(path.join(dir, 'wdevd'));
  const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
  const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
  let storage: ServerProc | undefined;
  try {
    await wdevd.start();
    // The ring holds the bursts the test writes faster than one proxy takes them.
    const files = await makeWdevFiles(dir, 'vol0', { ldevBytes: 192 << 20, ddevBytes: SIZE, pbs: 4096 });
    await wdevd.client.createWdev({ ...files, name: 'vol0' });
    await archive.start();
    await proxy.start();
    storage = new ServerProc('walb-storage', path.join(dir, 'storage'), await freePort(), [
      '--archive',
      archive.address,
      '--proxy',
      proxy.address,
      '--wdevd-socket',
      path.join(wdevd.runDir, 'wdevd.sock'),
    ]);
    await storage.start();

    const { c } = await RawClient.go(wdevd.nbdSocket, 'vol0');
    const image = Buffer.alloc(SIZE);
    await writeRandom(c, image, 200, 1);

    const a = archiveClient(archive.address);
    const p = proxyClient(proxy.address);
    const sp = loadProto<StorageProto>('walb/v1/storage.proto').proto;
    const s = new sp.walb.v1.Storage(storage.address, grpc.credentials.createInsecure());
    await call(a, 'InitVol', { volume: 'vol0' });
    await call(p, 'ArchiveInfoAdd', { volume: 'vol0', name: 'a0', address: archive.address });
    await call(p, 'Start', { volume: 'vol0' });
    await call(s, 'InitVol', { volume: 'vol0', wdev: 'vol0' });

    // The full backup runs while writes go on.
    const op = await call<Operation__Output>(s, 'FullBackup', { volume: 'vol0' });
    const writing = writeRandom(c, image, 300, 10_000);
    const sops = operationsClient(storage.address);
    const done = await waitOp(sops, op.id);
    await writing;
    t.is(done.state, 'done', done.error);
    const state = (await call<{ state: string }>(s, 'GetState', { volume: 'vol0' })).state;
    if (state !== 'Target') t.log(storage.stderr.slice(-4000));
    t.is(state, 'Target');

    await writeRandom(c, image, 200, 20_000);
    const snap = await call<{ gid: number }>(s, 'Snapshot', { volume: 'vol0' });
    const gid = Number(snap.gid);
    await until(
      async () =>
        (await call<{ snapshots: { gid: number }[] }>(a, 'GetRestorable', { volume: 'vol0' })).snapshots.some(
          (x) => Number(x.gid) === gid,
        ),
      `gid ${gid} restorable on the archive`,
      120_000,
    ).catch((e) => {
      t.log(storage!.stderr.slice(-3000), proxy.stderr.slice(-2000), archive.stderr.slice(-2000));
      throw e;
    });
    const aops = operationsClient(archive.address);
    const r = await call<Operation__Output>(a, 'Restore', { volume: 'vol0', gid });
    const restored = await waitOp(aops, r.id);
    t.is(restored.state, 'done', restored.error);
    const bytes = fs.readFileSync(restored.result);
    t.true(bytes.equals(image), 'the restored snapshot is the device as written');
    // The storage freed the logs it shipped.
    const st = await wdevd.client.status('vol0');
    t.true(st.lsids!.oldest > 0, 'oldest lsid advanced');
    t.false(st.overflow);
    c.destroy();
    for (const x of [a, p, s, sops, aops]) x.close();
  } finally {
    await storage?.kill();
    await proxy.kill();
    await archive.kill();
    await wdevd.cleanup();
    removeDir(dir);
  }
});
