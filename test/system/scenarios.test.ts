// docs/servers.md §12 n1 and n2 through walbc on the layout [s0, s1] [p0, p1] [a0]: both storages initialized
// (s0 and s1 each with its own wdev of the volume), a full backup from s0 restores to s0's device, then writes and
// a snapshot restore to it again — compared by hash of the device read over NBD against the restored image. On
// the way, the operator verbs around them: init-storage, archive-info, stop/start, clear-vol, call.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { ServerProc, freePort, operationHalfWay, walbcOn } from '../system-harness';
import { waitUntil } from '../waiting';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 16 << 20;

/** SHA-1 of a whole device read through NBD, 1 MiB at a time. */
async function deviceHash(c: RawClient, size: number): Promise<string> {
  const h = crypto.createHash('sha1');
  for (let off = 0, handle = 1000; off < size; off += 1 << 20, handle++) {
    const r = await c.readAt(handle, off, 1 << 20);
    if (r.error) throw new Error(`read at ${off}: NBD error ${r.error}`);
    h.update(r.data);
  }
  return h.digest('hex');
}

const fileHash = (f: string) => crypto.createHash('sha1').update(fs.readFileSync(f)).digest('hex');

async function writeRandom(c: RawClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const len = 4096 * (1 + crypto.randomInt(32));
    const off = 4096 * crypto.randomInt((SIZE - len) / 4096);
    if ((await c.writeAt(i + 1, off, crypto.randomBytes(len))) !== 0) throw new Error('write failed');
  }
  if ((await c.simple(P.NBD_CMD_FLUSH, 99999, 0, 0)) !== 0) throw new Error('flush failed');
}

test.serial(
  'n1/n2: both storages initialized, full backup from s0 then writes and a snapshot, each restore equals the device; the verbs around them',
  async (t) => {
    const dir = makeTempDir('scenario-n');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort());
    const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort());
    const p1 = new ServerProc('walb-proxy', path.join(dir, 'p1'), await freePort());
    const storages: ServerProc[] = [];
    try {
      await wdevd.start();
      for (const w of ['w0', 'w1']) {
        const files = await makeWdevFiles(dir, w, { ldevBytes: 64 << 20, ddevBytes: SIZE, pbs: 4096 });
        await wdevd.client.createWdev({ ...files, name: w });
      }
      await Promise.all([a0.start(), p0.start(), p1.start()]);
      for (const id of ['s0', 's1']) {
        const s = new ServerProc('walb-storage', path.join(dir, id), await freePort(), [
          '--archive',
          a0.address,
          '--proxy',
          `${p0.address},${p1.address}`,
          '--wdevd-socket',
          path.join(wdevd.runDir, 'wdevd.sock'),
        ]);
        await s.start();
        storages.push(s);
      }
      const layout = path.join(dir, 'layout.json');
      fs.writeFileSync(
        layout,
        JSON.stringify({
          storages: storages.map((s, i) => ({ id: `s${i}`, address: s.address })),
          proxies: [
            { id: 'p0', address: p0.address },
            { id: 'p1', address: p1.address },
          ],
          archives: [{ id: 'a0', address: a0.address }],
        }),
      );
      const { run: walbc, ok } = walbcOn(t, layout);

      // n1: init both storages.
      await ok('init-vol', 'vol', 'w0', '--storage', 's0');
      await ok('init-storage', 'vol', 'w1', '--storage', 's1');
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      t.is(await ok('get-state', 'vol', 's1'), 'Standby', 'init-storage starts the volume standby');
      const infos = await ok('archive-info', 'list', 'vol');
      t.regex(infos, new RegExp(`^p0\\ta0\\t${a0.address}\\t`, 'm'));
      t.regex(infos, new RegExp(`^p1\\ta0\\t${a0.address}\\t`, 'm'));

      const { c } = await RawClient.go(wdevd.nbdSocket, 'w0');
      await writeRandom(c, 50);
      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      const r1 = JSON.parse(await ok('restore', 'vol', String(full.gid), '--wait', '--json')) as {
        result: string;
      };
      t.is(fileHash(r1.result), await deviceHash(c, SIZE), 'n1: restore of the full backup = device');
      t.is(await ok('get-state', 'vol', 's0'), 'Target');
      t.is(await ok('get-state', 'vol', 's1'), 'Standby', 'the other storage is untouched');

      // m1: a second full backup is refused (the volume is Target, not SyncReady) and changes nothing.
      const again = await walbc('full-backup', 'vol', '--wait');
      t.not(again.code, 0);
      t.regex(again.stderr, /Target.*SyncReady|SyncReady.*Target/);
      t.is(await ok('get-state', 'vol', 's0'), 'Target');

      // n2: write, snapshot, restore.
      await writeRandom(c, 100);
      const gid = Number(await ok('snapshot', 'vol', '--wait'));
      t.true(gid > full.gid);
      const r2 = JSON.parse(await ok('restore', 'vol', String(gid), '--wait', '--json')) as {
        result: string;
      };
      t.is(fileHash(r2.result), await deviceHash(c, SIZE), 'n2: restore of the snapshot = device');
      t.deepEqual(
        JSON.parse(await ok('get-restored', 'vol', '--json')),
        [full.gid, gid].sort((x, y) => x - y),
      );
      await ok('del-restored', 'vol', String(full.gid));

      // Stop a proxy after it has sent everything, write on, start it again: nothing is lost.
      await ok('stop', 'vol', 'p0', '--mode', 'empty', '--wait');
      t.is(await ok('get-state', 'vol', 'p0'), 'Stopped');
      await writeRandom(c, 30);
      await ok('start', 'vol', 'p0');
      // Started; WlogRecv is Started while a wlog the storage retried at once is being received.
      t.regex(await ok('get-state', 'vol', 'p0'), /^(Started|WlogRecv)$/);
      const g3 = Number(await ok('snapshot', 'vol', '--wait'));
      const r3 = JSON.parse(await ok('restore', 'vol', String(g3), '--wait', '--json')) as { result: string };
      t.is(fileHash(r3.result), await deviceHash(c, SIZE), 'restore after a proxy stop/start = device');

      // WalB's get queries.
      t.is(await ok('get', 's0', 'host-type'), 'storage');
      t.is(await ok('get', 'a0', 'vol'), 'vol');
      t.is(await ok('get', 's0', 'state', 'vol'), 'Target');
      t.regex(await ok('get', 's0', 'log-usage', 'vol'), /^name:vol\tusage_pb:\d+\tcapacity_pb:\d+$/);
      t.regex(await ok('get', 's0', 'latest-snap', 'vol'), /^name:vol\tkind:storage\tgid:\d+$/);
      t.regex(await ok('get', 'p0', 'proxy-diff', 'vol'), /^a0\t\d+\t\d+$/);
      t.is(await ok('get', 'p0', 'is-wdiff-send-error', 'vol', 'a0'), '0');
      t.regex(await ok('get', 'a0', 'base', 'vol'), /^\|0(,\d+)?\|$/);
      t.is(await ok('get', 'a0', 'vol-size', 'vol'), String(SIZE / 512));
      t.regex(await ok('get', 'a0', 'num-diff', 'vol'), /^\d+$/);
      t.regex(await ok('get', 'a0', 'restorable', 'vol'), new RegExp(`^${g3} `, 'm'));
      t.is(await ok('get', 'a0', 'uuid', 'vol'), await ok('get', 's0', 'uuid', 'vol'));
      // Every target a server lists is answered.
      for (const server of ['s0', 'p0', 'a0'])
        for (const target of (await ok('get', server, 'help')).split('\n'))
          await ok('get', server, target, 'vol', ...(target === 'is-wdiff-send-error' ? ['a0'] : []));
      const badTarget = await walbc('get', 'a0', 'nope', 'vol');
      t.not(badTarget.code, 0);
      t.regex(badTarget.stderr, /the archive has no get target 'nope'/);

      // Any server command through `call`, typed by hand as JSON.
      const st = JSON.parse(await ok('call', 's0', 'Status', '{"volume":"vol"}')) as { doneGid: number };
      t.true(Number(st.doneGid) >= g3);
      const badMethod = await walbc('call', 's0', 'NoSuchThing');
      t.not(badMethod.code, 0);
      t.regex(badMethod.stderr, /the storage service has no method 'NoSuchThing'/);
      const badServer = await walbc('start', 'vol', 'x9');
      t.not(badServer.code, 0);
      t.regex(badServer.stderr, /no server 'x9' in the layout/);

      // clear-vol on the standby storage only, once stopped (Standby → SyncReady).
      await ok('stop', 'vol', 's1', '--wait');
      t.is(await ok('get-state', 'vol', 's1'), 'SyncReady');
      t.is(await ok('clear-vol', 'vol', 's1'), 'Clear');
      t.is(await ok('get-state', 'vol', 's1'), 'Clear');
      t.is(await ok('get-state', 'vol', 's0'), 'Target');
      c.destroy();
    } finally {
      for (const s of storages) await s.kill();
      await Promise.all([p0.kill(), p1.kill(), a0.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);

test.serial(
  'a full backup cancelled half-way, or whose archive or storage is killed half-way, leaves storage and archive ready for another, which then succeeds (watch, operations, cancel)',
  async (t) => {
    const dir = makeTempDir('scenario-cancel');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort());
    const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort());
    let s0: ServerProc | undefined;
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'w', { ldevBytes: 16 << 20, ddevBytes: SIZE, pbs: 4096 });
      fs.writeFileSync(files.ddev, crypto.randomBytes(SIZE));
      await wdevd.client.createWdev({ ...files, name: 'w' });
      await Promise.all([a0.start(), p0.start()]);
      // The scan is throttled (-fst) so that a backup takes about 16 s: long enough to act on it half-way even when
      // a loaded machine takes seconds to start each walbc.
      const config = path.join(dir, 'storage.json');
      fs.writeFileSync(config, JSON.stringify({ fullScanBytesPerSec: 1 << 20 }));
      s0 = new ServerProc('walb-storage', path.join(dir, 's0'), await freePort(), [
        '--config',
        config,
        '--archive',
        a0.address,
        '--proxy',
        p0.address,
        '--wdevd-socket',
        path.join(wdevd.runDir, 'wdevd.sock'),
      ]);
      await s0.start();
      const layout = path.join(dir, 'layout.json');
      fs.writeFileSync(
        layout,
        JSON.stringify({
          storages: [{ id: 's0', address: s0.address }],
          proxies: [{ id: 'p0', address: p0.address }],
          archives: [{ id: 'a0', address: a0.address }],
        }),
      );
      const { run: walbc, ok } = walbcOn(t, layout);
      await ok('init-vol', 'vol', 'w');
      const first = JSON.parse(await ok('full-backup', 'vol', '--json')) as { operation: { id: string } };
      await operationHalfWay(s0.address, first.operation.id);
      t.regex(
        await ok('operations', 's0'),
        new RegExp(`^${first.operation.id}\\tfull-backup\\tvol\\trunning\\t`, 'm'),
      );
      t.regex(await ok('cancel', 's0', first.operation.id), /full-backup of vol: (running|cancelled)/);
      const watched = await walbc('watch', 's0', first.operation.id);
      t.is(watched.code, 1, 'watch exits 1 for an operation that did not complete');
      t.regex(watched.stdout, /full-backup of vol: cancelled/);
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      await waitUntil(
        async () => (await ok('get-state', 'vol', 'a0')) === 'SyncReady',
        'archive SyncReady',
        20_000,
      );
      t.is(await ok('get-state', 'vol', 'a0'), 'SyncReady', 'the archive drops the partial base');
      t.regex(
        await ok('operations', 's0', '--finished'),
        new RegExp(`^${first.operation.id}\\t.*\\tcancelled\\t`, 'm'),
      );

      // e12-like: the archive dies in the middle of a full backup; the storage's operation fails and the volume is
      // SyncReady again; the restarted archive is SyncReady too (the partial base is dropped).
      const killed = JSON.parse(await ok('full-backup', 'vol', '--json')) as { operation: { id: string } };
      await operationHalfWay(s0.address, killed.operation.id);
      await a0.kill();
      const failed = await walbc('watch', 's0', killed.operation.id, '--json');
      t.is(failed.code, 1);
      t.regex(failed.stdout, /"state": "failed"/);
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      await a0.start();
      t.is(await ok('get-state', 'vol', 'a0'), 'SyncReady', 'the restarted archive drops the partial base');

      // The storage dies (SIGKILL) in the middle of one: its bulk stream and FullSync stream break; the archive
      // drops the partial base, and the restarted storage is SyncReady.
      const dying = JSON.parse(await ok('full-backup', 'vol', '--json')) as { operation: { id: string } };
      await operationHalfWay(s0.address, dying.operation.id);
      await s0.kill();
      await s0.start();
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      await waitUntil(
        async () => (await ok('get-state', 'vol', 'a0')) === 'SyncReady',
        'archive SyncReady',
        20_000,
      );
      t.is(await ok('get-state', 'vol', 'a0'), 'SyncReady', 'the archive drops the base of a dead storage');

      const second = JSON.parse(await ok('full-backup', 'vol', '--json')) as { operation: { id: string } };
      const done = JSON.parse(await ok('watch', 's0', second.operation.id, '--json')) as {
        state: string;
        result: string;
      };
      t.is(done.state, 'done');
      const gid = Number(done.result);
      await waitUntil(
        async () => (await ok('get-restorable', 'vol')).includes(`${gid} `),
        `gid ${gid} restorable`,
      );
      const r = JSON.parse(await ok('restore', 'vol', String(gid), '--wait', '--json')) as { result: string };
      const { c } = await RawClient.go(wdevd.nbdSocket, 'w');
      t.is(fileHash(r.result), await deviceHash(c, SIZE), 'the second full backup restores to the device');
      c.destroy();
    } finally {
      await s0?.kill();
      await Promise.all([p0.kill(), a0.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);
