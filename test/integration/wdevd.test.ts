// walb-wdevd as operators and clients use it: wdevc commands, real NBD clients (qemu-io, qemu-img, nbdcopy,
// nbdinfo, fio), restarts, overflow, reset-wal, freeze/melt, resize and bad requests.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../src/native';
import { run } from '../processes';
import { makeTempDir, removeDir, sparseFile } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { WDEVC, WDEVD, Wdevd, makeWdevFiles } from '../wdevd-harness';

const { NBD_EINVAL, NBD_ENOSPC, NBD_EOVERFLOW } = P;

const MiB = 1 << 20;

async function withDaemon(
  prefix: string,
  fn: (d: Wdevd, dir: string) => Promise<void>,
  extraArgs: string[] = [],
): Promise<void> {
  const dir = makeTempDir(prefix);
  const d = new Wdevd(dir, extraArgs);
  try {
    await d.start();
    await fn(d, dir);
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
}

function wdevc(d: Wdevd, args: string[]) {
  return run(process.execPath, [WDEVC, ...args, '--run-dir', d.runDir]);
}

async function readAll(c: RawClient, size: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += MiB) {
    const r = await c.readAt(1, off, Math.min(MiB, size - off));
    if (r.error !== 0) throw new Error(`read failed: ${r.error}`);
    r.data.copy(out, off);
  }
  return out;
}

test('wdevc formats an ldev and creates a wdev that nbdinfo sees with its size; delete-wdev leaves the data on the ddev', async (t) => {
  await withDaemon('wdevd-cli', async (d, dir) => {
    const ldev = sparseFile(path.join(dir, 'l'), 16 * MiB);
    const ddev = sparseFile(path.join(dir, 'd'), 32 * MiB);
    const f = await wdevc(d, ['format-ldev', ldev, ddev, '-n', 'vol0', '--json']);
    t.is(f.code, 0, f.stderr);
    t.is(JSON.parse(f.stdout).ringBufferSize, (16 * MiB) / 512 - 10);
    const c = await wdevc(d, ['create-wdev', ldev, ddev]);
    t.is(c.code, 0, c.stderr);
    t.regex(c.stdout, /name\s+vol0/);
    const info = await run('nbdinfo', ['--json', d.uri('vol0')]);
    t.is(info.code, 0, info.stderr);
    const exp = JSON.parse(info.stdout).exports[0];
    t.is(exp['export-size'], 32 * MiB);
    t.true(exp['can_flush'] && exp['can_fua'] && exp['can_trim'] && exp['can_zero']);
    const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 3M', '-c', 'flush', d.uri('vol0')]);
    t.is(w.code, 0, w.stderr);
    const r = await run('qemu-io', [
      '-f',
      'raw',
      '-c',
      'read -P 0x5a 1M 3M',
      '-c',
      'read -P 0 0 1M',
      d.uri('vol0'),
    ]);
    t.is(r.code, 0, r.stdout + r.stderr);
    t.notRegex(r.stdout, /Pattern verification failed/);
    const list = await wdevc(d, ['list-wdev']);
    t.regex(list.stdout, /vol0\s+running/);
    const del = await wdevc(d, ['delete-wdev', 'vol0']);
    t.is(del.code, 0, del.stderr);
    const data = fs.readFileSync(ddev);
    t.true(data.subarray(MiB, 4 * MiB).every((b) => b === 0x5a));
    const gone = await wdevc(d, ['status', 'vol0']);
    t.is(gone.code, 1);
    t.regex(gone.stderr, /no wdev named 'vol0' \[NOT_FOUND\]/);
  });
});

test('qemu-img and nbdcopy copy an image into a wdev and back byte for byte', async (t) => {
  await withDaemon('wdevd-copy', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'copy', { ldevBytes: 8 * MiB, ddevBytes: 24 * MiB });
    await d.client.createWdev({ ...files, name: 'copy' });
    const src = path.join(dir, 'src.img');
    const img = Buffer.alloc(24 * MiB);
    crypto.randomFillSync(img, 0, 10 * MiB);
    crypto.randomFillSync(img, 16 * MiB, 3 * MiB);
    fs.writeFileSync(src, img);
    const conv = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, d.uri('copy')]);
    t.is(conv.code, 0, conv.stderr);
    const back = path.join(dir, 'back.img');
    const cp = await run('nbdcopy', [d.uri('copy'), back]);
    t.is(cp.code, 0, cp.stderr);
    t.true(fs.readFileSync(back).equals(img), 'nbdcopy reads what qemu-img wrote');
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, d.uri('copy')]);
    t.is(cmp.code, 0, cmp.stdout + cmp.stderr);
    // The ring (8 MiB) is smaller than what was written: the log wrapped, and the wdev overflowed.
    const st = await d.client.status('copy');
    t.true(st.overflow);
  });
});

test('fio writes random blocks through the nbd engine and verifies them', async (t) => {
  await withDaemon('wdevd-fio', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'fio', { ldevBytes: 16 * MiB, ddevBytes: 64 * MiB, pbs: 4096 });
    await d.client.createWdev({ ...files, name: 'fio' });
    const r = await run(
      'fio',
      [
        '--name=verify',
        '--ioengine=nbd',
        `--uri=${d.uri('fio')}`,
        '--rw=randwrite',
        '--bs=4k',
        '--bssplit=4k/50:64k/40:512k/10',
        '--iodepth=16',
        '--size=32M',
        '--verify=crc32c',
        '--verify_fatal=1',
        '--do_verify=1',
      ],
      { cwd: dir },
    );
    t.is(r.code, 0, r.stdout + r.stderr);
    t.notRegex(r.stdout + r.stderr, /verify: bad/);
  });
});

test('four connections writing disjoint regions at once all read back, on every connection', async (t) => {
  await withDaemon('wdevd-multi', async (d, dir) => {
    const size = 16 * MiB;
    const files = await makeWdevFiles(dir, 'multi', { ldevBytes: 32 * MiB, ddevBytes: size });
    await d.client.createWdev({ ...files, name: 'multi' });
    const expect = Buffer.alloc(size);
    const conns = await Promise.all([0, 1, 2, 3].map(() => RawClient.go(d.nbdSocket, 'multi')));
    await Promise.all(
      conns.map(async ({ c }, i) => {
        const region = size / 4;
        let handle = 1;
        for (let off = i * region; off < (i + 1) * region; off += 256 * 1024) {
          const data = crypto.randomBytes(256 * 1024);
          data.copy(expect, off);
          c.request(P.NBD_CMD_WRITE, handle++, off, data.length, 0, data);
        }
        for (let k = 1; k < handle; k++) t.is((await c.reply()).error, 0);
      }),
    );
    // Acknowledged writes of every connection are visible to all of them (multi-conn).
    for (const { c } of conns) t.true((await readAll(c, size)).equals(expect));
    const { c } = conns[0];
    t.is(await c.simple(P.NBD_CMD_FLUSH, 9, 0, 0), 0);
    for (const x of conns) x.c.destroy();
  });
});

test('bad requests get NBD errors and the daemon keeps serving', async (t) => {
  await withDaemon('wdevd-bad', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'bad', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'bad' });
    const unknown = await RawClient.handshake(d.nbdSocket);
    unknown.option(
      P.NBD_OPT_GO,
      Buffer.concat([Buffer.from([0, 0, 0, 4]), Buffer.from('nope'), Buffer.from([0, 0])]),
    );
    t.is((await unknown.optReply()).type, P.NBD_REP_ERR_UNKNOWN);
    unknown.destroy();
    const { c } = await RawClient.go(d.nbdSocket, 'bad');
    t.is((await c.readAt(1, 8 * MiB, 4096)).error, NBD_EINVAL, 'read past the end');
    t.is(await c.writeAt(2, 8 * MiB - 512, Buffer.alloc(1024)), NBD_ENOSPC, 'write past the end');
    t.is(await c.writeAt(3, 100, Buffer.alloc(512)), NBD_EINVAL, 'unaligned write');
    t.is(await c.simple(P.NBD_CMD_TRIM, 4, 0, 16 * MiB), NBD_EINVAL, 'trim past the end');
    c.request(P.NBD_CMD_READ, 5, 0, 64 * MiB);
    const big = await c.reply();
    t.true(big.error === NBD_EINVAL || big.error === NBD_EOVERFLOW, `oversized read: ${big.error}`);
    c.destroy();
    const again = await RawClient.go(d.nbdSocket, 'bad');
    t.is(await again.c.writeAt(1, 0, Buffer.alloc(4096, 7)), 0);
    t.true((await again.c.readAt(2, 0, 4096)).data.every((b) => b === 7));
    again.c.destroy();
    t.false((await d.client.status('bad')).failed);
  });
});

test('a wdev overflows when logs nobody extracted are overwritten; is-overflow stays set until reset-wal, which keeps the data', async (t) => {
  await withDaemon('wdevd-overflow', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'ovf', { ldevBytes: 2 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'ovf' });
    const { c } = await RawClient.go(d.nbdSocket, 'ovf');
    const img = crypto.randomBytes(8 * MiB);
    for (let off = 0, h = 1; off < img.length; off += MiB, h++)
      t.is(await c.writeAt(h, off, img.subarray(off, off + MiB)), 0, 'writes are never refused by overflow');
    t.is(await c.simple(P.NBD_CMD_FLUSH, 100, 0, 0), 0);
    const over = await wdevc(d, ['is-overflow', 'ovf']);
    t.is(over.stdout.trim(), '1');
    const before = await d.client.status('ovf');
    t.true(before.logUsage > before.logCapacity);
    // Sticky: freeing log space does not clear it.
    const cp = await d.client.takeCheckpoint('ovf');
    await d.client.setOldestLsid('ovf', cp.lsids!.prevWritten);
    t.true((await d.client.status('ovf')).overflow);

    const reset = await wdevc(d, ['reset-wal', 'ovf', '--json']);
    t.is(reset.code, 0, reset.stderr);
    const after = JSON.parse(reset.stdout);
    t.false(after.overflow);
    t.is(after.lsids.latest, 0);
    t.is(after.lsids.oldest, 0);
    t.not(after.uuid, before.uuid);
    const sup = await native.readSuper(files.ldev);
    t.is(sup.uuid, after.uuid);
    t.is(sup.writtenLsid, 0);
    t.true((await readAll(c, img.length)).equals(img), 'data survives reset-wal');
    // New logs start at lsid 0 with the new salt and validate.
    t.is(await c.writeAt(200, 0, Buffer.alloc(4096, 1), P.NBD_CMD_FLAG_FUA), 0);
    const ex = await native.ldevExtract(files.ldev, path.join(dir, 'after.wlog'), { beginLsid: 0 });
    t.is(ex.packs, 1);
    c.destroy();
  });
});

test('after reset-wal a FUA write makes only its own log permanent (no sync target left from the old log), and the oldest lsid can follow it', async (t) => {
  await withDaemon('wdevd-reset-fua', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'rf', { ldevBytes: 16 * MiB, ddevBytes: 8 * MiB, pbs: 4096 });
    await d.client.createWdev({ ...files, name: 'rf' });
    const { c } = await RawClient.go(d.nbdSocket, 'rf');
    // A long log first: the syncer's last target is far beyond what the new log will reach.
    t.is(await c.writeAt(1, 0, crypto.randomBytes(4 * MiB), P.NBD_CMD_FLAG_FUA), 0);
    await d.client.resetWal('rf');
    t.is(await c.writeAt(2, 0, crypto.randomBytes(MiB), P.NBD_CMD_FLAG_FUA), 0);
    await new Promise((r) => setTimeout(r, 300)); // the syncer's next round would reveal a stale target
    const st = await d.client.status('rf');
    t.is(st.lsids!.latest, 257);
    t.is(st.lsids!.permanent, 257, 'permanent never passes latest');
    await d.client.setOldestLsid('rf', (await d.client.takeCheckpoint('rf')).lsids!.prevWritten);
    t.is((await d.client.status('rf')).lsids!.oldest, 257);
    c.destroy();
  });
});

test('with error-before-overflow, writes that would overwrite unextracted logs fail with ENOSPC and the logs stay intact', async (t) => {
  await withDaemon('wdevd-ebo', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'ebo', { ldevBytes: 2 * MiB, ddevBytes: 8 * MiB });
    const w = await wdevc(d, ['create-wdev', files.ldev, files.ddev, '-n', 'ebo', '--error-before-overflow']);
    t.is(w.code, 0, w.stderr);
    const { c } = await RawClient.go(d.nbdSocket, 'ebo');
    let refused = 0;
    let h = 1;
    for (let off = 0; off < 4 * MiB; off += 256 * 1024) {
      const e = await c.writeAt(h++, off, Buffer.alloc(256 * 1024, 3));
      if (e === NBD_ENOSPC) refused++;
      else t.is(e, 0);
    }
    t.true(refused > 0, 'some writes were refused');
    const st = await d.client.status('ebo');
    t.false(st.overflow);
    t.true(st.logUsage <= st.logCapacity);
    const ex = await native.ldevExtract(files.ldev, path.join(dir, 'ebo.wlog'), { beginLsid: 0 });
    t.is(ex.endLsid, st.lsids!.latest, 'every log from 0 is still valid');
    // Freeing the log lets writes through again.
    const cp = await d.client.takeCheckpoint('ebo');
    await d.client.setOldestLsid('ebo', cp.lsids!.prevWritten);
    t.is(await c.writeAt(h, 0, Buffer.alloc(256 * 1024, 4)), 0);
    c.destroy();
  });
});

test('wdevs come back after a graceful restart and after SIGKILL, with their data', async (t) => {
  await withDaemon('wdevd-restart', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'keep', { ldevBytes: 16 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'keep', options: { checkpointIntervalMs: 0 } });
    const img = crypto.randomBytes(4 * MiB);
    let { c } = await RawClient.go(d.nbdSocket, 'keep');
    t.is(await c.writeAt(1, 0, img), 0);
    t.is(await c.simple(P.NBD_CMD_FLUSH, 2, 0, 0), 0);
    c.destroy();
    const latest = (await d.client.status('keep')).lsids!.latest;
    t.is(await d.stop(), 0);
    t.is((await native.readSuper(files.ldev)).writtenLsid, latest, 'a graceful stop leaves nothing to redo');
    await d.start();
    ({ c } = await RawClient.go(d.nbdSocket, 'keep'));
    t.true((await readAll(c, 4 * MiB)).equals(img));
    const img2 = crypto.randomBytes(4 * MiB);
    t.is(await c.writeAt(3, 4 * MiB, img2), 0);
    t.is(await c.simple(P.NBD_CMD_FLUSH, 4, 0, 0), 0);
    c.destroy();
    // No checkpoint since the flush: the data is only in the log until the redo at the next start.
    const superBefore = await native.readSuper(files.ldev);
    await d.kill();
    await d.start();
    const st = await d.client.status('keep');
    t.true(st.lsids!.latest > superBefore.writtenLsid, 'redo replayed logs beyond the last checkpoint');
    ({ c } = await RawClient.go(d.nbdSocket, 'keep'));
    t.true((await readAll(c, 8 * MiB)).equals(Buffer.concat([img, img2])));
    c.destroy();
  });
});

test('freeze holds writes until melt, and a freeze with a timeout melts by itself', async (t) => {
  await withDaemon('wdevd-freeze', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'frz', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'frz' });
    const { c } = await RawClient.go(d.nbdSocket, 'frz');
    t.true((await d.client.freeze('frz', 0)).frozen);
    t.is((await wdevc(d, ['is-frozen', 'frz'])).stdout.trim(), '1');
    c.request(P.NBD_CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 9));
    const pending = c.reply();
    let answered = false;
    void pending.then(() => (answered = true));
    await new Promise((r) => setTimeout(r, 300));
    t.false(answered, 'a write waits while frozen');
    await d.client.melt('frz');
    t.is((await pending).error, 0);
    await d.client.freeze('frz', 1);
    c.request(P.NBD_CMD_WRITE, 2, 4096, 4096, 0, Buffer.alloc(4096, 8));
    const t0 = Date.now();
    t.is((await c.reply()).error, 0);
    t.true(Date.now() - t0 >= 500, 'the write waited for the timeout');
    t.false((await d.client.status('frz')).frozen);
    c.destroy();
  });
});

test('resize grows the wdev after its ddev grew; shrinking and growing beyond the ddev are refused', async (t) => {
  await withDaemon('wdevd-resize', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'rs', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'rs' });
    const tooBig = await wdevc(d, ['resize', 'rs', '16M']);
    t.is(tooBig.code, 2);
    t.regex(tooBig.stderr, /data device holds only/);
    fs.truncateSync(files.ddev, 16 * MiB);
    const ok = await wdevc(d, ['resize', 'rs']);
    t.is(ok.code, 0, ok.stderr);
    t.is((await d.client.status('rs')).deviceSize, (16 * MiB) / 512);
    t.is((await native.readSuper(files.ldev)).deviceSize, (16 * MiB) / 512);
    const info = await run('nbdinfo', ['--size', d.uri('rs')]);
    t.is(info.stdout.trim(), String(16 * MiB));
    const shrink = await wdevc(d, ['resize', 'rs', '8M']);
    t.is(shrink.code, 2);
    t.regex(shrink.stderr, /can only grow/);
  });
});

test('set-oldest-lsid refuses lsids beyond prev_written or inside a logpack; take-checkpoint writes written_lsid to the super', async (t) => {
  await withDaemon('wdevd-oldest', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'old', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'old', options: { checkpointIntervalMs: 0 } });
    const { c } = await RawClient.go(d.nbdSocket, 'old');
    t.is(await c.writeAt(1, 0, Buffer.alloc(64 * 1024, 1), P.NBD_CMD_FLAG_FUA), 0);
    t.is(await c.writeAt(2, 0, Buffer.alloc(64 * 1024, 2), P.NBD_CMD_FLAG_FUA), 0);
    c.destroy();
    const st = await d.client.status('old');
    t.is(st.lsids!.prevWritten, 0, 'no checkpoint yet');
    const beyond = await wdevc(d, ['set-oldest-lsid', 'old', '5']);
    t.is(beyond.code, 2);
    t.regex(beyond.stderr, /outside \[0, 0\]/);
    const cp = await d.client.takeCheckpoint('old');
    t.is(cp.lsids!.prevWritten, cp.lsids!.latest);
    t.is((await native.readSuper(files.ldev)).writtenLsid, cp.lsids!.latest);
    const inside = await wdevc(d, ['set-oldest-lsid', 'old', '3']);
    t.is(inside.code, 2);
    t.regex(inside.stderr, /no logpack starts at lsid 3/);
    const first = await native.ldevExtract(files.ldev, path.join(dir, 'o.wlog'), { beginLsid: 0 });
    t.is(first.packs, 2);
    const second = 1 + (64 * 1024) / 512;
    const ok = await wdevc(d, ['set-oldest-lsid', 'old', String(second)]);
    t.is(ok.code, 0, ok.stderr);
    t.is((await native.readSuper(files.ldev)).oldestLsid, second);
    t.is((await d.client.status('old')).logUsage, cp.lsids!.latest - second);
  });
});

test('a bad config file makes walb-wdevd exit with 2 naming the key', async (t) => {
  const dir = makeTempDir('wdevd-config');
  try {
    const cfg = path.join(dir, 'wdevd.json');
    fs.writeFileSync(cfg, JSON.stringify({ nbd: { tcp: 'localhost' } }));
    const r = await run(process.execPath, [WDEVD, '--config', cfg]);
    t.is(r.code, 2);
    t.regex(r.stderr, /nbd\.tcp/);
    fs.writeFileSync(cfg, JSON.stringify({ nbd: { unknownKey: 1 } }));
    const r2 = await run(process.execPath, [WDEVD, '--config', cfg]);
    t.is(r2.code, 2);
    t.regex(r2.stderr, /unknownKey/);
  } finally {
    removeDir(dir);
  }
});

test('delete-wdev with a client connected answers its requests in flight, closes the connection and stays up', async (t) => {
  await withDaemon('wdevd-delete-busy', async (d, dir) => {
    const files = await makeWdevFiles(dir, 'busy', { ldevBytes: 8 * MiB, ddevBytes: 8 * MiB });
    await d.client.createWdev({ ...files, name: 'busy' });
    const { c } = await RawClient.go(d.nbdSocket, 'busy');
    const data = crypto.randomBytes(MiB);
    t.is(await c.writeAt(1, 0, data), 0);
    await d.client.deleteWdev('busy');
    await c.closedByServer();
    t.true(fs.readFileSync(files.ddev).subarray(0, MiB).equals(data), 'the write reached the ddev');
    t.deepEqual(await d.client.listWdev(), []);
    await d.client.createWdev({ ...files, name: 'busy' });
    const again = await RawClient.go(d.nbdSocket, 'busy');
    t.true((await again.c.readAt(2, 0, MiB)).data.equals(data));
    again.c.destroy();
  });
});
