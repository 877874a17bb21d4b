// The backup group end to end, as real processes on loopback: walb-wdevd, walb-storage, walb-proxy, walb-archive.
// A full backup of a wdev in use, writes, a snapshot, and its restore on the archive equals the device, byte for
// byte.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Operation__Output } from '../../src/generated/walb/v1/Operation';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import {
  ServerProc,
  archiveClient,
  freePort,
  operationsClient,
  proxyClient,
  storageClient,
} from '../system-harness';
import { waitUntil } from '../waiting';
import { Relay } from '../relay';
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

async function waitOp(ops: ReturnType<typeof operationsClient>, id: string): Promise<Operation__Output> {
  let last: Operation__Output | undefined;
  await waitUntil(async () => (last = await ops.Get({ id })).state !== 'running', 'operation', 120_000);
  return last!;
}

/** The archive's full-sync path: its native bulk receiver (default) or the FullSync stream itself ('off'). */
const fullBackupWhileWriting = test.macro(async (t, bulkListen: string, expected: 'bulk' | 'stream') => {
  const dir = makeTempDir('backup-group');
  const wdevd = new Wdevd(path.join(dir, 'wdevd'));
  const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort(), [
    '--bulk-listen',
    bulkListen,
  ]);
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
    const s = storageClient(storage.address);
    await a.InitVol({ volume: 'vol0' });
    await p.ArchiveInfoAdd({ volume: 'vol0', name: 'a0', address: archive.address });
    await p.Start({ volume: 'vol0' });
    await s.InitVol({ volume: 'vol0', wdev: 'vol0' });

    // The full backup runs while writes go on.
    const op = await s.FullBackup({ volume: 'vol0' });
    const writing = writeRandom(c, image, 300, 10_000);
    const sops = operationsClient(storage.address);
    const done = await waitOp(sops, op.id);
    await writing;
    t.is(done.state, 'done', done.error);
    t.true(archive.stderr.includes(`"path":"${expected}"`));
    // A receiver the storage cannot reach is passed by, with a warning that says what to change.
    t.is(storage.stderr.includes('"event":"bulk-port-unreachable"'), bulkListen.startsWith('127.0.0.2'));
    const state = (await s.GetState({ volume: 'vol0' })).state;
    if (state !== 'Target') t.log(storage.stderr.slice(-4000));
    t.is(state, 'Target');

    await writeRandom(c, image, 200, 20_000);
    const snap = await s.Snapshot({ volume: 'vol0' });
    const gid = Number(snap.gid);
    await waitUntil(
      async () => (await a.GetRestorable({ volume: 'vol0' })).snapshots.some((x) => Number(x.gid) === gid),
      `gid ${gid} restorable on the archive`,
      120_000,
    ).catch((e) => {
      t.log(storage!.stderr.slice(-3000), proxy.stderr.slice(-2000), archive.stderr.slice(-2000));
      throw e;
    });
    const aops = operationsClient(archive.address);
    const r = await a.Restore({ volume: 'vol0', gid });
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

test.serial(
  'full backup of a wdev in use (native bulk path), writes, snapshot: the restored snapshot equals the device',
  fullBackupWhileWriting,
  '',
  'bulk',
);

test.serial(
  'full backup with the bulk receiver off goes over the FullSync stream, and the restored snapshot equals the device',
  fullBackupWhileWriting,
  'off',
  'stream',
);

test.serial(
  'full backup to an archive whose bulk port the storage cannot reach falls back to the FullSync stream, and the restored snapshot equals the device',
  fullBackupWhileWriting,
  // Bound on another loopback address than the one the storage dials: connection refused.
  '127.0.0.2:0',
  'stream',
);

test.serial(
  'with the first proxy down the logs go through the second, and the first is used again when it is back',
  async (t) => {
    const dir = makeTempDir('backup-failover');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
    const p1 = new ServerProc('walb-proxy', path.join(dir, 'proxy1'), await freePort());
    const p2 = new ServerProc('walb-proxy', path.join(dir, 'proxy2'), await freePort());
    let storage: ServerProc | undefined;
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'vol1', { ldevBytes: 128 << 20, ddevBytes: SIZE, pbs: 4096 });
      await wdevd.client.createWdev({ ...files, name: 'vol1' });
      await Promise.all([archive.start(), p1.start(), p2.start()]);
      storage = new ServerProc('walb-storage', path.join(dir, 'storage'), await freePort(), [
        '--archive',
        archive.address,
        '--proxy',
        `${p1.address},${p2.address}`,
        '--wdevd-socket',
        path.join(wdevd.runDir, 'wdevd.sock'),
      ]);
      await storage.start();
      const a = archiveClient(archive.address);
      const s = storageClient(storage.address);
      await a.InitVol({ volume: 'vol1' });
      for (const px of [p1, p2]) {
        const pc = proxyClient(px.address);
        await pc.ArchiveInfoAdd({ volume: 'vol1', name: 'a0', address: archive.address });
        await pc.Start({ volume: 'vol1' });
        pc.close();
      }
      await s.InitVol({ volume: 'vol1', wdev: 'vol1' });
      const sops = operationsClient(storage.address);
      const op = await s.FullBackup({ volume: 'vol1' });
      t.is((await waitOp(sops, op.id)).state, 'done');

      const { c } = await RawClient.go(wdevd.nbdSocket, 'vol1');
      const image = fs.readFileSync(files.ddev); // the device as backed up (nothing written since)
      const restorable = async (gid: number) =>
        (await a.GetRestorable({ volume: 'vol1' })).snapshots.some((x) => Number(x.gid) === gid);
      // Whatever p1 holds must reach the archive first: a diff left on a dead proxy blocks the chain (too-new for
      // the later ones) until that proxy returns — as in WalB.
      const fullGid = Number((await waitOp(sops, op.id)).result);
      await waitUntil(() => restorable(fullGid), 'the full backup restorable', 60_000);
      await p1.kill();
      await writeRandom(c, image, 100, 1);
      const g1 = Number((await s.Snapshot({ volume: 'vol1' })).gid);
      await waitUntil(() => restorable(g1), 'snapshot through the second proxy', 120_000).catch((e) => {
        t.log(storage!.stderr.slice(-5000), p2.stderr.slice(-3000), archive.stderr.slice(-2000));
        throw e;
      });
      t.regex(
        storage.stderr,
        new RegExp(`"event":"wlog-sent".*"proxy":"${p2.address}"`),
        'the second proxy carried it',
      );
      t.false((await s.IsOverflow({ volume: 'vol1' })).overflow);
      const proxies = async () => (await s.ListProxies({})).proxies;
      const down = (await proxies())[0];
      t.is(down.address, p1.address);
      t.false(down.available, 'the dead proxy is marked unavailable');
      t.not(down.lastError, '');
      t.true((await proxies())[1].available);

      await p1.start();
      // kick makes every proxy due for a heartbeat: the first is available again within a few seconds and,
      // being first in priority, carries the logs again.
      await s.Kick({});
      await waitUntil(
        async () => (await proxies())[0].available,
        'the heartbeat finds the first proxy',
        15_000,
      );
      let g2 = 0;
      let round = 0;
      await waitUntil(
        async () => {
          const before = storage!.stderr.length;
          await writeRandom(c, image, 10, 1000 + 100 * round++);
          g2 = Number((await s.Snapshot({ volume: 'vol1' })).gid);
          await waitUntil(() => restorable(g2), 'snapshot after the first proxy is back', 120_000);
          return new RegExp(`"event":"wlog-sent".*"proxy":"${p1.address}"`).test(
            storage!.stderr.slice(before),
          );
        },
        'the first proxy preferred again',
        60_000,
      );

      const aops = operationsClient(archive.address);
      const r = await a.Restore({ volume: 'vol1', gid: g2 });
      const restored = await waitOp(aops, r.id);
      t.is(restored.state, 'done', restored.error);
      t.true(fs.readFileSync(restored.result).equals(image));
      c.destroy();
      for (const x of [a, s, sops, aops]) x.close();
    } finally {
      await storage?.kill();
      await Promise.all([p1.kill(), p2.kill(), archive.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);

test.serial(
  'storage and archive killed with SIGKILL during writes come back; every snapshot restores to the device as it was',
  async (t) => {
    const dir = makeTempDir('backup-kill');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
    const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
    let storage: ServerProc | undefined;
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'vol2', { ldevBytes: 128 << 20, ddevBytes: SIZE, pbs: 512 });
      await wdevd.client.createWdev({ ...files, name: 'vol2' });
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
      let a = archiveClient(archive.address);
      const pc = proxyClient(proxy.address);
      let s = storageClient(storage.address);
      await a.InitVol({ volume: 'vol2' });
      await pc.ArchiveInfoAdd({ volume: 'vol2', name: 'a0', address: archive.address });
      await pc.Start({ volume: 'vol2' });
      await s.InitVol({ volume: 'vol2', wdev: 'vol2' });
      let sops = operationsClient(storage.address);
      t.is((await waitOp(sops, (await s.FullBackup({ volume: 'vol2' })).id)).state, 'done');

      const { c } = await RawClient.go(wdevd.nbdSocket, 'vol2');
      const image = fs.readFileSync(files.ddev);
      const snaps: { gid: number; image: Buffer }[] = [];
      const snapshot = async () => {
        snaps.push({
          gid: Number((await s.Snapshot({ volume: 'vol2' })).gid),
          image: Buffer.from(image),
        });
      };
      await writeRandom(c, image, 60, 1);
      await snapshot();
      // SIGKILL the storage in the middle of writes; the wdev keeps the logs; the restarted storage ships them.
      const writing = writeRandom(c, image, 80, 1000);
      await new Promise((r) => setTimeout(r, 50));
      await storage.kill();
      await writing;
      s.close();
      sops.close();
      await storage.start();
      s = storageClient(storage.address);
      sops = operationsClient(storage.address);
      t.is((await s.GetState({ volume: 'vol2' })).state, 'Target');
      await snapshot();
      // SIGKILL the archive; snapshots wait (the proxy retries) and become restorable once it is back.
      await archive.kill();
      a.close();
      await writeRandom(c, image, 60, 2000);
      await snapshot();
      await new Promise((r) => setTimeout(r, 1000));
      await archive.start();
      a = archiveClient(archive.address);
      await pc.Kick({});
      const last = snaps[snaps.length - 1].gid;
      await waitUntil(
        async () =>
          (await a.GetRestorable({ volume: 'vol2', all: true })).snapshots.some(
            (x) => Number(x.gid) === last,
          ),
        `gid ${last} restorable`,
        120_000,
      );
      const aops = operationsClient(archive.address);
      for (const sn of snaps) {
        const op = await waitOp(aops, (await a.Restore({ volume: 'vol2', gid: sn.gid })).id);
        t.is(op.state, 'done', op.error);
        t.true(fs.readFileSync(op.result).equals(sn.image), `gid ${sn.gid} restores to the device as it was`);
      }
      c.destroy();
      for (const x of [a, pc, s, sops, aops]) x.close();
    } finally {
      await storage?.kill();
      await Promise.all([proxy.kill(), archive.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);

test.serial(
  'cut links (storage-proxy, then proxy-archive) hold snapshots back; once reconnected and kicked they become restorable',
  async (t) => {
    const dir = makeTempDir('backup-cut');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
    const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
    let storage: ServerProc | undefined;
    const toProxy = new Relay({ host: '127.0.0.1', port: proxy.port });
    const toArchive = new Relay({ host: '127.0.0.1', port: archive.port });
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'vol3', { ldevBytes: 64 << 20, ddevBytes: SIZE, pbs: 4096 });
      await wdevd.client.createWdev({ ...files, name: 'vol3' });
      await Promise.all([archive.start(), proxy.start(), toProxy.open(), toArchive.open()]);
      storage = new ServerProc('walb-storage', path.join(dir, 'storage'), await freePort(), [
        '--archive',
        archive.address,
        '--proxy',
        toProxy.address,
        '--wdevd-socket',
        path.join(wdevd.runDir, 'wdevd.sock'),
      ]);
      await storage.start();
      const a = archiveClient(archive.address);
      const pc = proxyClient(proxy.address);
      const s = storageClient(storage.address);
      await a.InitVol({ volume: 'vol3' });
      await pc.ArchiveInfoAdd({ volume: 'vol3', name: 'a0', address: toArchive.address });
      await pc.Start({ volume: 'vol3' });
      await s.InitVol({ volume: 'vol3', wdev: 'vol3' });
      const sops = operationsClient(storage.address);
      const full = await waitOp(sops, (await s.FullBackup({ volume: 'vol3' })).id);
      t.is(full.state, 'done');
      const restorable = async (gid: number) =>
        (await a.GetRestorable({ volume: 'vol3', all: true })).snapshots.some((x) => Number(x.gid) === gid);
      await waitUntil(() => restorable(Number(full.result)), 'the base');
      const { c } = await RawClient.go(wdevd.nbdSocket, 'vol3');
      const image = fs.readFileSync(files.ddev);

      for (const [link, name] of [
        [toProxy, 'storage-proxy'],
        [toArchive, 'proxy-archive'],
      ] as const) {
        await link.cut();
        await writeRandom(c, image, 40, 1 + (name === 'proxy-archive' ? 10_000 : 0));
        const gid = Number((await s.Snapshot({ volume: 'vol3' })).gid);
        await new Promise((r) => setTimeout(r, 2000));
        t.false(await restorable(gid), `${name} cut: gid ${gid} is not restorable`);
        await link.open();
        await s.Kick({});
        await pc.Kick({});
        await waitUntil(() => restorable(gid), `gid ${gid} after the ${name} link is back`, 120_000);
        const aops = operationsClient(archive.address);
        const op = await waitOp(aops, (await a.Restore({ volume: 'vol3', gid })).id);
        t.true(fs.readFileSync(op.result).equals(image), `${name}: gid ${gid} restores to the device`);
        aops.close();
      }
      c.destroy();
      for (const x of [a, pc, s, sops]) x.close();
    } finally {
      await toProxy.cut();
      await toArchive.cut();
      await storage?.kill();
      await Promise.all([proxy.kill(), archive.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);

test.serial(
  'servers stopped and started in random subsets, and killed with SIGKILL at random points, while writes go on: every snapshot restores byte for byte',
  async (t) => {
    const dir = makeTempDir('backup-chaos');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
    const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
    const storage = new ServerProc('walb-storage', path.join(dir, 'storage'), await freePort(), [
      '--archive',
      archive.address,
      '--proxy',
      proxy.address,
      '--wdevd-socket',
      path.join(dir, 'wdevd', 'run', 'wdevd.sock'),
    ]);
    try {
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'vol4', { ldevBytes: 128 << 20, ddevBytes: SIZE, pbs: 512 });
      await wdevd.client.createWdev({ ...files, name: 'vol4' });
      await Promise.all([archive.start(), proxy.start(), storage.start()]);
      const clients = () => ({
        a: archiveClient(archive.address),
        p: proxyClient(proxy.address),
        s: storageClient(storage.address),
        sops: operationsClient(storage.address),
        pops: operationsClient(proxy.address),
        aops: operationsClient(archive.address),
      });
      let k = clients();
      await k.a.InitVol({ volume: 'vol4' });
      await k.p.ArchiveInfoAdd({ volume: 'vol4', name: 'a0', address: archive.address });
      await k.p.Start({ volume: 'vol4' });
      await k.s.InitVol({ volume: 'vol4', wdev: 'vol4' });
      t.is((await waitOp(k.sops, (await k.s.FullBackup({ volume: 'vol4' })).id)).state, 'done');

      const { c } = await RawClient.go(wdevd.nbdSocket, 'vol4');
      const image = fs.readFileSync(files.ddev);
      const snaps: { gid: number; image: Buffer }[] = [];
      const servers = { storage, proxy, archive };
      // WALB_CHAOS_ROUNDS=N for a long run (the suite runs 8).
      const rounds = Number(process.env.WALB_CHAOS_ROUNDS ?? 8);
      for (let round = 0; round < rounds; round++) {
        await writeRandom(c, image, 20, 1 + round * 100);
        snaps.push({
          gid: Number((await k.s.Snapshot({ volume: 'vol4' })).gid),
          image: Buffer.from(image),
        });
        const names = (Object.keys(servers) as (keyof typeof servers)[]).filter(
          () => crypto.randomInt(2) === 1,
        );
        if (round % 2 === 0) {
          // Graceful stop and start of a random subset, while the next writes go on.
          const writing = writeRandom(c, image, 20, 50 + round * 100);
          for (const n of names) {
            if (n === 'storage') {
              await waitOp(k.sops, (await k.s.Stop({ volume: 'vol4' })).id);
              await k.s.Start({ volume: 'vol4' });
            } else if (n === 'proxy') {
              await waitOp(k.pops, (await k.p.Stop({ volume: 'vol4' })).id);
              await k.p.Start({ volume: 'vol4' });
            } else {
              await waitOp(k.aops, (await k.a.Stop({ volume: 'vol4' })).id);
              await k.a.Start({ volume: 'vol4' });
            }
          }
          await writing;
        } else {
          // SIGKILL a random subset in the middle of writes, then restart them.
          const writing = writeRandom(c, image, 30, 50 + round * 100);
          await new Promise((r) => setTimeout(r, crypto.randomInt(200)));
          for (const n of names) await servers[n].kill();
          await writing;
          for (const x of Object.values(k)) x.close();
          for (const n of names) await servers[n].start();
          k = clients();
        }
        t.log(
          `round ${round}: ${round % 2 === 0 ? 'stop/start' : 'SIGKILL'} ${names.join(', ') || 'nothing'}`,
        );
      }
      await k.s.Kick({});
      await k.p.Kick({});
      const last = snaps[snaps.length - 1].gid;
      await waitUntil(
        async () =>
          (await k.a.GetRestorable({ volume: 'vol4', all: true })).snapshots.some(
            (x) => Number(x.gid) === last,
          ),
        `gid ${last}`,
        180_000,
      );
      const all = (await k.a.GetRestorable({ volume: 'vol4', all: true })).snapshots;
      t.log(
        `snapshots ${snaps.map((x) => x.gid).join(',')}; restorable ${all.map((x) => Number(x.gid)).join(',')}`,
      );
      for (const sn of snaps) {
        const op = await waitOp(k.aops, (await k.a.Restore({ volume: 'vol4', gid: sn.gid })).id);
        t.is(op.state, 'done', op.error);
        t.true(fs.readFileSync(op.result).equals(sn.image), `gid ${sn.gid} restores byte for byte`);
        await k.a.DelRestored({ volume: 'vol4', gid: sn.gid });
      }
      c.destroy();
      for (const x of Object.values(k)) x.close();
    } finally {
      await Promise.all([storage.kill(), proxy.kill(), archive.kill()]);
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);
