// walb-archive as a process on loopback, driven over gRPC as storages and proxies drive it: full backup stream,
// wdiff streams with their typed rejections, restorable list, restore as an operation, kill -9 in the middle of a
// transfer, and a bad config.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Operation__Output } from '../../src/generated/walb/v1/Operation';
import type { TransferReply__Output } from '../../src/generated/walb/v1/TransferReply';
import { native } from '../../src/native';
import { ROOT, run } from '../processes';
import { makeTempDir, removeDir } from '../temp-files';
import { ServerProc, archiveClient, freePort, operationsClient } from '../system-harness';

const ARCHIVE = path.join(ROOT, 'dist', 'src', 'bin', 'walb-archive.js');
const SIZE = 16 << 20;
const UUID = 'cd'.repeat(16);

function clients(port: number) {
  const address = `127.0.0.1:${port}`;
  return { archive: archiveClient(address), ops: operationsClient(address) };
}

/** Runs a bidirectional transfer: the header, then (if accepted) the rest; resolves with the replies. */
async function transfer(
  stream: grpc.ClientDuplexStream<object, TransferReply__Output>,
  header: object,
  rest: object[],
): Promise<TransferReply__Output[]> {
  const replies: TransferReply__Output[] = [];
  let wake: (() => void) | undefined;
  let error: Error | undefined;
  let ended = false;
  stream.on('data', (r: TransferReply__Output) => {
    replies.push(r);
    wake?.();
  });
  stream.on('error', (e: Error) => {
    error = e;
    wake?.();
  });
  stream.on('end', () => {
    ended = true;
    wake?.();
  });
  const next = async (n: number) => {
    while (replies.length < n && !error && !ended) await new Promise<void>((r) => (wake = r));
    if (error) throw error;
  };
  stream.write(header);
  await next(1);
  if (!replies[0]?.accepted) {
    stream.end();
    return replies;
  }
  for (const m of rest) if (!stream.write(m)) await new Promise((r) => stream.once('drain', r));
  stream.end();
  await next(2);
  return replies;
}

function wdiffMessages(file: string): object[] {
  const b = fs.readFileSync(file);
  const out: object[] = [];
  for (let off = 0; off < b.length; off += 1 << 20) out.push({ data: b.subarray(off, off + (1 << 20)) });
  out.push({ end: {} });
  return out;
}

const diffHeader = (volume: string, file: string, b: number, e: number, mergeable = false) => ({
  header: {
    volume,
    storageUuid: UUID,
    size: SIZE / 512,
    diff: {
      snapB: { gidB: b, gidE: b },
      snapE: { gidB: e, gidE: e },
      mergeable,
      timestamp: 1_700_000_000 + e,
    },
  },
  file,
});

test('full backup and wdiffs over gRPC; every restorable snapshot restores byte for byte; kill -9 mid-transfer loses nothing', async (t) => {
  const dir = makeTempDir('archive-server');
  const port = await freePort();
  const a = new ServerProc('walb-archive', path.join(dir, 'data'), port);
  try {
    // Ground truth: a base image and three wlogs in a row, converted to wdiffs.
    const img = crypto.randomBytes(SIZE);
    img.fill(0, 2 << 20, 6 << 20);
    const truth = [path.join(dir, 't0.img')];
    fs.writeFileSync(truth[0], img);
    const wdiffs: string[] = [];
    let lsid = 0;
    for (let i = 1; i <= 3; i++) {
      const wlog = path.join(dir, `${i}.wlog`);
      lsid = (await native.wlogGen(wlog, { deviceSize: SIZE / 512, amount: 3 << 20, lsid, seed: i })).endLsid;
      wdiffs.push(path.join(dir, `${i}.wdiff`));
      await native.wlogToWdiff([wlog], wdiffs[i - 1], { indexed: true });
      truth.push(path.join(dir, `t${i}.img`));
      fs.copyFileSync(truth[i - 1], truth[i]);
      await native.wlogRedo(wlog, truth[i], { discard: 'zero' });
    }

    await a.start();
    let { archive, ops } = clients(port);
    t.is((await archive.InitVol({ volume: 'vol0' })).state, 'SyncReady');

    // Full backup: zero bulks are not sent.
    const bulks: object[] = [];
    for (let off = 0; off < SIZE; off += 1 << 20) {
      const b = img.subarray(off, off + (1 << 20));
      if (!b.every((x) => x === 0)) bulks.push({ data: { offset: off, data: b } });
    }
    bulks.push({ end: { snapshot: { gidB: 0, gidE: 0 } } });
    const fsr = await transfer(
      archive.FullSync(),
      { header: { volume: 'vol0', size: SIZE / 512, storageUuid: UUID, timestamp: 1_700_000_000 } },
      bulks,
    );
    t.truthy(fsr[0].accepted);
    t.truthy(fsr[1].done);
    t.is((await archive.GetState({ volume: 'vol0' })).state, 'Archived');

    const send = (h: ReturnType<typeof diffHeader>) =>
      transfer(archive.SendWdiff(), { header: h.header }, wdiffMessages(h.file));
    const tooNew = await send(diffHeader('vol0', wdiffs[1], 1, 2));
    t.is(tooNew[0].rejected?.reason, 'TOO_NEW_DIFF');
    t.truthy((await send(diffHeader('vol0', wdiffs[0], 0, 1)))[1].done);
    t.is((await send(diffHeader('vol0', wdiffs[0], 0, 1)))[0].rejected?.reason, 'TOO_OLD_DIFF');
    t.truthy((await send(diffHeader('vol0', wdiffs[1], 1, 2, true)))[1].done);
    const other = diffHeader('vol0', wdiffs[2], 2, 3);
    const wrongUuid = await transfer(
      archive.SendWdiff(),
      { header: { ...other.header, storageUuid: 'ee'.repeat(16) } },
      wdiffMessages(other.file),
    );
    t.is(wrongUuid[0].rejected?.reason, 'DIFFERENT_UUID');
    const noVol = await transfer(archive.SendWdiff(), { header: { ...other.header, volume: 'nope' } }, []);
    t.is(noVol[0].rejected?.reason, 'NOT_FOUND');

    // kill -9 after the archive accepted a wdiff and got part of it: nothing half-written survives.
    const partial = archive.SendWdiff();
    const firstReply = new Promise<TransferReply__Output>((r) => partial.once('data', r));
    partial.on('error', () => undefined);
    partial.write({ header: other.header });
    t.truthy((await firstReply).accepted);
    partial.write({ data: fs.readFileSync(other.file).subarray(0, 4096) });
    await new Promise((r) => setTimeout(r, 200));
    await a.kill();
    archive.close();
    ops.close();
    await a.start();
    ({ archive, ops } = clients(port));
    t.false(fs.readdirSync(path.join(dir, 'data', 'vol0')).some((n) => n.startsWith('.tmp-')));
    t.is((await archive.GetState({ volume: 'vol0' })).state, 'Archived');
    t.truthy((await send(diffHeader('vol0', wdiffs[2], 2, 3)))[1].done, 'the transfer is simply repeated');

    const restorable = await archive.GetRestorable({
      volume: 'vol0',
      all: true,
    });
    t.deepEqual(
      restorable.snapshots.map((s) => [Number(s.gid), s.explicit]),
      [
        [0, true],
        [1, false],
        [2, true],
        [3, true],
      ],
    );
    for (const gid of [3, 1]) {
      const op = await archive.Restore({ volume: 'vol0', gid });
      t.is(op.state, 'running');
      const final = await new Promise<Operation__Output>((resolve, reject) => {
        let last: Operation__Output | undefined;
        const w = ops.Watch({ id: op.id });
        w.on('data', (o: Operation__Output) => (last = o));
        w.on('end', () => resolve(last!));
        w.on('error', reject);
      });
      t.is(final.state, 'done', final.error);
      t.true(fs.readFileSync(final.result).equals(fs.readFileSync(truth[gid])), `gid ${gid}`);
    }
    const again = await archive.Restore({ volume: 'vol0', gid: 2 });
    t.is(again.state, 'running');
    await t.throwsAsync(archive.Restore({ volume: 'vol0', gid: 9 }), { message: /not restorable/ });
    archive.close();
    ops.close();
  } finally {
    await a.kill();
    removeDir(dir);
  }
});

test('walb-archive refuses a bad config with exit 2 naming the key', async (t) => {
  const dir = makeTempDir('archive-config');
  try {
    const cfg = path.join(dir, 'archive.json');
    fs.writeFileSync(cfg, JSON.stringify({ listen: 'nowhere' }));
    const r = await run(process.execPath, [ARCHIVE, '--config', cfg]);
    t.is(r.code, 2);
    t.regex(r.stderr, /listen/);
  } finally {
    removeDir(dir);
  }
});
