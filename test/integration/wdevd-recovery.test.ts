// walb-wdevd at the edges of WalB's on-disk contract: a log device laid out the way WalB's own `wdevc format-ldev`
// leaves it (stale bytes everywhere, even a valid logpack of an earlier log stream at lsid 0), a torn last logpack
// after a crash (cut down as docs/formats.md §2.8 says), and NBD over loopback TCP.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../src/native';
import { buildLogpack, buildSuperSector, parseWlog } from '../format-oracle';
import { run } from '../processes';
import { makeTempDir, patchFile, removeDir, sparseFile } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { freePort } from '../system-harness';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const MiB = 1 << 20;

test('an ldev formatted the way WalB wdevc leaves it, with stale data and an old log stream in the ring, is served and its stale logs are not redone', async (t) => {
  const dir = makeTempDir('wdevd-walb-ldev');
  const d = new Wdevd(dir);
  try {
    for (const pbs of [512, 4096]) {
      const ldev = path.join(dir, `w${pbs}.ldev`);
      const ddev = sparseFile(path.join(dir, `w${pbs}.ddev`), 8 * MiB);
      // WalB writes only super sector 0 and does not clear the ring: fill everything with old bytes first.
      fs.writeFileSync(ldev, crypto.randomBytes(4 * MiB));
      const rb = 4096 / pbs + 2;
      const ring = (4 * MiB) / pbs - rb;
      // A valid logpack at lsid 0 from the previous log stream (another salt) that would write 0x77 at LB 0.
      const stale = buildLogpack(pbs, 0x1234, 0, [
        { kind: 'normal', offset: 0, ioSize: 8, data: Buffer.alloc(4096, 0x77) },
      ]);
      patchFile(ldev, rb * pbs, Buffer.concat([stale.header, stale.data]));
      const salt = 0x5eed0000 + pbs;
      patchFile(
        ldev,
        4096,
        buildSuperSector(pbs, {
          salt,
          uuid: '00112233445566778899aabbccddeeff',
          name: `w${pbs}`,
          ring,
          deviceSize: (8 * MiB) / 512,
        }),
      );
      if (!d.proc) await d.start();
      const st = await d.client.createWdev({ ldev, ddev, name: '' });
      t.is(st.name, `w${pbs}`, 'the name comes from the super sector');
      t.is(st.lsids!.latest, 0, 'nothing redone: the old pack fails the new salt');
      t.false(st.overflow);
      const { c } = await RawClient.go(d.nbdSocket, `w${pbs}`);
      t.true(
        (await c.readAt(1, 0, 4096)).data.every((b) => b === 0),
        'the stale write did not reach the ddev',
      );
      const data = crypto.randomBytes(64 * 1024);
      t.is(await c.writeAt(2, 4096, data, P.NBD_CMD_FLAG_FUA), 0);
      t.true((await c.readAt(3, 4096, data.length)).data.equals(data));
      c.destroy();
      const sup = await native.readSuper(ldev);
      t.is(sup.salt, salt >>> 0, 'salt and uuid are kept');
      t.is(sup.uuid, '00112233445566778899aabbccddeeff');
      const ex = await native.ldevExtract(ldev, path.join(dir, `w${pbs}.wlog`), { beginLsid: 0 });
      t.is(ex.packs, 1, 'the new log starts at lsid 0 with our pack');
    }
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
});

test('a torn last logpack found after a crash is cut at its first bad record and the rest is redone', async (t) => {
  const dir = makeTempDir('wdevd-torn');
  const d = new Wdevd(dir);
  try {
    await d.start();
    const pbs = 4096;
    const files = await makeWdevFiles(dir, 'torn', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB, pbs });
    await d.client.createWdev({ ...files, name: 'torn', options: { checkpointIntervalMs: 0 } });
    const { c } = await RawClient.go(d.nbdSocket, 'torn');
    // Three writes queued while frozen go out together: one logpack of three records.
    await d.client.freeze('torn', 0);
    const blocks = [0x11, 0x22, 0x33].map((v) => Buffer.alloc(4096, v));
    blocks.forEach((b, i) => c.request(P.NBD_CMD_WRITE, i + 1, i * 4096, 4096, 0, b));
    await new Promise((r) => setTimeout(r, 200));
    await d.client.melt('torn');
    for (let i = 0; i < 3; i++) t.is((await c.reply()).error, 0);
    t.is(await c.simple(P.NBD_CMD_FLUSH, 9, 0, 0), 0);
    c.destroy();
    await d.kill();

    const before = parseWlog(
      await (async () => {
        const w = path.join(dir, 'before.wlog');
        await native.ldevExtract(files.ldev, w, { beginLsid: 0 });
        return fs.readFileSync(w);
      })(),
    );
    t.is(before.packs.length, 1);
    t.is(before.packs[0].nRecords, 3);
    // Tear it: the third record's data block never made it (stale bytes instead).
    const rec = before.packs[0].records[2];
    const rb = 4096 / pbs + 2;
    patchFile(files.ldev, (rb + rec.lsid) * pbs, Buffer.alloc(pbs, 0xee));

    await d.start();
    t.regex(d.stderr, /"event":"wdev-open".*"shrunk":true/);
    const st = await d.client.status('torn');
    t.is(st.lsids!.latest, 1 + 2, 'redo ends after the two good records');
    const w = path.join(dir, 'after.wlog');
    await native.ldevExtract(files.ldev, w, { beginLsid: 0 });
    const after = parseWlog(fs.readFileSync(w));
    t.is(after.packs.length, 1);
    t.is(after.packs[0].nRecords, 2, 'the header on the ldev was rewritten with two records');
    t.is(after.packs[0].totalIoSize, 2);
    t.is((await native.readSuper(files.ldev)).writtenLsid, 3);
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
});

test('with --nbd-tcp the wdevs are also served on loopback TCP', async (t) => {
  const dir = makeTempDir('wdevd-tcp');
  const port = await freePort();
  const d = new Wdevd(dir, ['--nbd-tcp', `127.0.0.1:${port}`]);
  try {
    await d.start();
    const files = await makeWdevFiles(dir, 'tcp', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'tcp' });
    const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 0 1M', `nbd://127.0.0.1:${port}/tcp`]);
    t.is(w.code, 0, w.stderr);
    const r = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x42 0 1M', d.uri('tcp')]);
    t.is(r.code, 0, r.stderr);
    t.notRegex(r.stdout, /Pattern verification failed/);
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
});
