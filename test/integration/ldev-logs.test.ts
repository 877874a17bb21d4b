// Reading the logs of a live wdev's ldev the way the storage server ships them: [oldest, permanent) in chunks,
// every pack validated; the chunks form a wlog that redoes to the device's image.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../src/native';
import { buildEndBlock, buildWlogHeader } from '../format-oracle';
import { makeTempDir, patchFile, removeDir, sparseFile } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const MiB = 1 << 20;

test('the logs of a wdev read in chunks from its ldev form a wlog that redoes to the device image', async (t) => {
  const dir = makeTempDir('ldev-logs');
  const d = new Wdevd(dir);
  try {
    await d.start();
    const files = await makeWdevFiles(dir, 'logs', { ldevBytes: 16 * MiB, ddevBytes: 8 * MiB, pbs: 4096 });
    await d.client.createWdev({ ...files, name: 'logs' });
    const { c } = await RawClient.go(d.nbdSocket, 'logs');
    const image = Buffer.alloc(8 * MiB);
    let h = 1;
    for (let i = 0; i < 300; i++) {
      const len = 4096 * (1 + crypto.randomInt(16));
      const off = 4096 * crypto.randomInt((8 * MiB - len) / 4096);
      const data = crypto.randomBytes(len);
      data.copy(image, off);
      c.request(P.NBD_CMD_WRITE, h++, off, len, 0, data);
      if (i % 16 === 15) for (let k = 0; k < 16; k++) t.is((await c.reply()).error, 0);
    }
    for (let k = 0; k < 300 % 16; k++) t.is((await c.reply()).error, 0);
    t.is(await c.simple(P.NBD_CMD_FLUSH, h++, 0, 0), 0);
    c.destroy();
    const st = await d.client.status('logs');
    const end = st.lsids!.permanent;
    t.true(end > 0);

    const parts: Buffer[] = [];
    let lsid = st.lsids!.oldest;
    let chunks = 0;
    let sup;
    while (lsid < end) {
      const r = await native.ldevReadLogs(files.ldev, {
        beginLsid: lsid,
        endLsid: end,
        maxBytes: 256 * 1024,
      });
      t.is(r.beginLsid, lsid);
      t.true(r.nextLsid > lsid && r.nextLsid <= end);
      parts.push(r.data);
      lsid = r.nextLsid;
      sup = r.super;
      chunks++;
    }
    t.true(chunks > 1, 'read in several chunks');
    const wlog = path.join(dir, 'logs.wlog');
    fs.writeFileSync(
      wlog,
      Buffer.concat([
        buildWlogHeader({
          pbs: 4096,
          salt: sup!.salt,
          uuid: Buffer.from(sup!.uuid, 'hex'),
          beginLsid: 0,
          endLsid: end,
        }),
        ...parts,
        buildEndBlock(4096, sup!.salt),
      ]),
    );
    const v = await native.wlogVerify(wlog);
    t.true(v.packs > 0);
    const target = sparseFile(path.join(dir, 'redo.img'), 8 * MiB);
    await native.wlogRedo(wlog, target, { discard: 'zero' });
    t.true(fs.readFileSync(target).equals(image));

    // A damaged pack inside a range that must be complete is an error, not an early end.
    const rb = 4096 / 4096 + 2;
    patchFile(files.ldev, (rb + 1) * 4096, Buffer.alloc(4096, 0xee));
    const err = await t.throwsAsync(native.ldevReadLogs(files.ldev, { beginLsid: 0, endLsid: end }));
    t.is((err as { code?: string }).code, 'CORRUPTION');
    const past = await t.throwsAsync(native.ldevReadLogs(files.ldev, { beginLsid: end, endLsid: end + 5 }));
    t.is((past as { code?: string }).code, 'CORRUPTION', 'no pack beyond the permanent lsid');
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
});
