// walbc over a running backup group, as an operator types it: init-vol, full-backup --wait, snapshot --wait,
// restore --wait, get-restorable, status, is-overflow; a bad layout file is refused with exit 2.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { ServerProc, freePort, walbcOn } from '../system-harness';
import { waitUntil } from '../waiting';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 16 << 20;

test.serial(
  'walbc runs the operator verbs across the group and the restored snapshot equals the device',
  async (t) => {
    const dir = makeTempDir('walbc');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
    const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
    let storage: ServerProc | undefined;
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'vol0', { ldevBytes: 64 << 20, ddevBytes: SIZE, pbs: 4096 });
      await wdevd.client.createWdev({ ...files, name: 'vol0' });
      await Promise.all([archive.start(), proxy.start()]);
      storage = new ServerProc('walb-storage', path.join(dir, 'storage'), await freePort(), [
        '--archive',
        archive.address,
        '--proxy',
        proxy.address,
        '--wdevd-socket',
        path.join(wdevd.runDir, 'wdevd.sock'),
      ]);
      await storage.start();
      const layout = path.join(dir, 'layout.json');
      fs.writeFileSync(
        layout,
        JSON.stringify({
          storages: [{ id: 's0', address: storage.address }],
          proxies: [{ id: 'p0', address: proxy.address }],
          archives: [{ id: 'a0', address: archive.address }],
        }),
      );
      const walbc = walbcOn(t, layout).run;

      const init = await walbc('init-vol', 'vol0', 'vol0');
      t.is(init.code, 0, init.stderr);
      const { c } = await RawClient.go(wdevd.nbdSocket, 'vol0');
      const data = crypto.randomBytes(4 << 20);
      t.is(await c.writeAt(1, 0, data, P.NBD_CMD_FLAG_FUA), 0);
      const full = await walbc('full-backup', 'vol0', '--wait', '--json');
      t.is(full.code, 0, full.stderr);
      t.true(Number(JSON.parse(full.stdout).gid) >= 1);

      const more = crypto.randomBytes(2 << 20);
      t.is(await c.writeAt(2, 8 << 20, more, P.NBD_CMD_FLAG_FUA), 0);
      const snap = await walbc('snapshot', 'vol0', '--wait');
      t.is(snap.code, 0, snap.stderr);
      const gid = Number(snap.stdout.trim());
      const list = await walbc('get-restorable', 'vol0');
      t.regex(list.stdout, new RegExp(`^${gid} \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d 1$`, 'm'));
      const restored = await walbc('restore', 'vol0', String(gid), '--wait', '--json');
      t.is(restored.code, 0, restored.stderr);
      const image = fs.readFileSync(JSON.parse(restored.stdout).result);
      t.true(image.subarray(0, 4 << 20).equals(data));
      t.true(image.subarray(8 << 20, 10 << 20).equals(more));
      t.true(image.equals(fs.readFileSync(files.ddev)), 'restored == data device');

      const status = await walbc('status');
      t.regex(status.stdout, /s0\tstorage\tvol0\tTarget/);
      t.regex(status.stdout, /p0\tproxy\tvol0\tStarted/);
      t.regex(status.stdout, /a0\tarchive\tvol0\tArchived/);
      // The detail column says where the volume stands on each server.
      t.regex(
        status.stdout,
        new RegExp(
          `s0\\tstorage\\tvol0\\tTarget\\t-\\tdone gid ${gid}, 0 snapshot\\(s\\) queued, log \\d+% used`,
        ),
      );
      t.regex(status.stdout, /p0\tproxy\tvol0\tStarted\t-\ta0: 0 wdiff\(s\) 0\.0 MiB to send/);
      t.regex(
        status.stdout,
        new RegExp(`a0\\tarchive\\tvol0\\tArchived\\t-\\tlatest \\|${gid}\\|, \\d+ wdiff\\(s\\)`),
      );
      t.is((await walbc('is-overflow', 'vol0')).stdout.trim(), '0');
      t.is((await walbc('is-wdiff-send-error', 'vol0')).stdout.trim(), '0');
      t.deepEqual(
        (await walbc('get-restored', 'vol0', '--json')).stdout.trim(),
        JSON.stringify([gid], null, 2),
      );
      c.destroy();

      fs.writeFileSync(layout, JSON.stringify({ storages: [], proxies: [], archives: [] }));
      const bad = await walbc('status');
      t.is(bad.code, 2);
      t.regex(bad.stderr, /storages must be a non-empty list/);
    } finally {
      await storage?.kill();
      await Promise.all([proxy.kill(), archive.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);

test.serial(
  'with the proxy down the log overflows: is-overflow says 1, the storage stops the volume, writes never fail; reset-vol on both ends and a new full backup recover it',
  async (t) => {
    const dir = makeTempDir('walbc-overflow');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
    const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
    let storage: ServerProc | undefined;
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'ovf', { ldevBytes: 4 << 20, ddevBytes: SIZE, pbs: 4096 });
      await wdevd.client.createWdev({ ...files, name: 'ovf' });
      await Promise.all([archive.start(), proxy.start()]);
      storage = new ServerProc('walb-storage', path.join(dir, 'storage'), await freePort(), [
        '--archive',
        archive.address,
        '--proxy',
        proxy.address,
        '--wdevd-socket',
        path.join(wdevd.runDir, 'wdevd.sock'),
      ]);
      await storage.start();
      const layout = path.join(dir, 'layout.json');
      fs.writeFileSync(
        layout,
        JSON.stringify({
          storages: [{ id: 's0', address: storage.address }],
          proxies: [{ id: 'p0', address: proxy.address }],
          archives: [{ id: 'a0', address: archive.address }],
        }),
      );
      const { run: walbc, ok } = walbcOn(t, layout);
      t.is((await walbc('init-vol', 'ovf', 'ovf')).code, 0);
      t.is((await walbc('full-backup', 'ovf', '--wait')).code, 0);
      await proxy.kill();
      const { c } = await RawClient.go(wdevd.nbdSocket, 'ovf');
      for (let i = 0; i < 12; i++)
        t.is(await c.writeAt(i + 1, (i % 8) << 20, crypto.randomBytes(1 << 20)), 0, 'writes never fail');
      t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
      c.destroy();
      await waitUntil(
        async () => (await walbc('is-overflow', 'ovf')).stdout.trim() === '1',
        'overflow',
        30_000,
      );
      t.is((await walbc('is-overflow', 'ovf')).stdout.trim(), '1');
      await waitUntil(
        async () => (await walbc('get-state', 'ovf', 's0')).stdout.trim() === 'Stopped',
        'storage Stopped',
        30_000,
      );
      t.is(
        (await walbc('get-state', 'ovf', 's0')).stdout.trim(),
        'Stopped',
        'the storage stopped shipping a broken history',
      );

      // Recovery (docs/operations.md): both ends back to SyncReady, the proxy back, a new full backup; then
      // snapshots flow again and restore to the device.
      t.is(await ok('reset-vol', 'ovf', 's0'), 'SyncReady');
      await ok('stop', 'ovf', 'a0', '--wait');
      t.is(await ok('reset-vol', 'ovf', 'a0'), 'SyncReady');
      await proxy.start();
      await ok('full-backup', 'ovf', '--wait');
      t.is(await ok('is-overflow', 'ovf'), '0');
      const again = await RawClient.go(wdevd.nbdSocket, 'ovf');
      t.is(await again.c.writeAt(1, 0, crypto.randomBytes(1 << 20), P.NBD_CMD_FLAG_FUA), 0);
      const gid = await ok('snapshot', 'ovf', '--wait');
      const restored = JSON.parse(await ok('restore', 'ovf', gid, '--wait', '--json')) as { result: string };
      const device = Buffer.alloc(SIZE);
      for (let off = 0, h = 10; off < SIZE; off += 1 << 20, h++)
        (await again.c.readAt(h, off, 1 << 20)).data.copy(device, off);
      t.true(
        fs.readFileSync(restored.result).equals(device),
        'after recovery the snapshot restores to the device',
      );
      again.c.destroy();
    } finally {
      await storage?.kill();
      await Promise.all([proxy.kill(), archive.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);
