// The recovery runbook's cases that need one archive (docs/operations.md "Recovery runbook / The backup group"),
// each on a running group through walbc, with writes through NBD and restores compared with the device byte for
// byte: the storage's metadata lost (e8), the proxy's wdiffs lost (e5), a cut storage–proxy link long enough for
// the log to overflow (e10), the log overflowing while the storage is down (e4). After each of these recoveries the
// snapshots restorable before still restore to what they held, and backup goes on. And the archive's data lost
// (e6, with one archive): a full backup starts its history again.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { P, type RawClient } from '../nbd-client';
import { Group } from '../group-fixture';
import { waitUntil } from '../waiting';

/** init-vol, writes, a full backup, more writes, a snapshot: the two gids and what they restore to. */
async function backedUp(t: ExecutionContext, g: Group, c: RawClient): Promise<Map<number, string>> {
  await g.ok('init-vol', 'vol', 'w0');
  await g.writeRandom(c, 40);
  const full = JSON.parse(await g.ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
  await g.writeRandom(c, 40);
  const snap = Number(await g.ok('snapshot', 'vol', '--wait'));
  const held = await g.restoredHashes('vol', [Number(full.gid), snap]);
  t.is(held.get(snap), await g.deviceHash(c));
  return held;
}

/** 12 MiB of writes into a 4 MiB log: it overflows; writes never fail. */
async function writePastTheLog(t: ExecutionContext, c: RawClient): Promise<void> {
  for (let i = 0; i < 12; i++)
    t.is(await c.writeAt(i + 1, (i % 6) << 20, crypto.randomBytes(1 << 20)), 0, 'writes never fail');
  t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
}

/** The hash backup `gid` restores to the device, the older snapshots to what they held, and backup goes on. */
async function recovered(
  t: ExecutionContext,
  g: Group,
  c: RawClient,
  gid: number,
  held: Map<number, string>,
): Promise<void> {
  t.is(await g.ok('get-state', 'vol', 's0'), 'Target');
  t.is(await g.restoredHash('vol', gid), await g.deviceHash(c), 'the hash backup restores to the device');
  const restorable = await g.restorable('vol');
  for (const old of held.keys()) t.true(restorable.includes(old), `gid ${old} still restorable`);
  t.deepEqual(
    await g.restoredHashes('vol', [...held.keys()]),
    held,
    'older snapshots restore to what they held',
  );
  await g.writeRandom(c, 20);
  const next = Number(await g.ok('snapshot', 'vol', '--wait'));
  t.true(next > gid);
  t.is(await g.restoredHash('vol', next), await g.deviceHash(c), 'backup goes on');
}

async function hashBackup(g: Group): Promise<number> {
  return Number((JSON.parse(await g.ok('hash-backup', 'vol', '--wait', '--json')) as { gid: number }).gid);
}

test.serial(
  "e8: the storage's metadata is lost; init-storage on the same wdev, then hash-backup brings the archive to the device and the older snapshots still restore",
  async (t) => {
    const g = await Group.start(t, 'rec-e8');
    try {
      const c = await g.nbd();
      const held = await backedUp(t, g, c);
      await g.writeRandom(c, 40);

      await g.storages[0].kill();
      fs.rmSync(g.storages[0].dataDir, { recursive: true, force: true });
      await g.storages[0].start();
      t.is(await g.ok('get-state', 'vol', 's0'), 'Clear', 'the storage forgot the volume');
      await g.writeRandom(c, 40);

      await g.ok('init-storage', 'vol', 'w0');
      const gid = await hashBackup(g);
      t.true(gid > Math.max(...held.keys()), 'gids continue above the archive');
      await recovered(t, g, c, gid, held);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  "e5: the proxy's wdiffs are lost while the archive is down; a snapshot never becomes restorable; start-synchronizing the primary (archive-info add and start on the proxy), then hash-backup recovers",
  async (t) => {
    const g = await Group.start(t, 'rec-e5');
    try {
      const { ok } = g;
      const c = await g.nbd();
      const held = await backedUp(t, g, c);

      await g.archives[0].kill();
      await g.writeRandom(c, 40);
      const lost = Number(await ok('snapshot', 'vol'));
      const pendingOnP0 = async () => Number((await ok('get', 'p0', 'proxy-diff', 'vol')).split('\t')[1]);
      await waitUntil(async () => {
        const st = JSON.parse(await ok('call', 's0', 'Status', '{"volume":"vol"}')) as { queue: unknown[] };
        return st.queue.length === 0 && (await pendingOnP0()) > 0;
      }, 'the logs shipped to p0, which holds them for the archive');

      await g.proxies[0].kill();
      fs.rmSync(g.proxies[0].dataDir, { recursive: true, force: true });
      await g.proxies[0].start();
      await g.archives[0].start();
      t.is(await ok('get-state', 'vol', 'p0'), 'Clear', 'the proxy forgot the volume');

      // WalB's start_synchronizing: the archive registered on the proxy again, and the volume started there.
      t.is(await ok('start-synchronizing', 'vol', 'a0'), 'a0 is synchronizing vol');
      t.is(await ok('get-state', 'vol', 'p0'), 'Started');
      t.is(
        await ok('archive-info', 'list', 'vol', '--proxy', 'p0'),
        `p0\ta0\t${g.archives[0].address}\tsnappy\t0`,
      );
      await ok('kick-all');
      await g.writeRandom(c, 20);
      const gap = Number(await ok('snapshot', 'vol'));
      await waitUntil(
        () => g.proxies[0].stderr.includes('"reason":"TOO_NEW_DIFF"'),
        'the archive refuses the new diffs as too new',
      );
      const restorable = await g.restorable('vol');
      t.false(restorable.includes(lost), 'the snapshot whose diffs were lost is not restorable');
      t.false(restorable.includes(gap), 'nor any later one');

      await ok('stop', 'vol', 's0', '--wait');
      const gid = await hashBackup(g);
      t.true(gid > Math.max(...held.keys()), 'gids continue above the archive');
      await recovered(t, g, c, gid, held);
      await waitUntil(async () => (await pendingOnP0()) === 0, 'the diffs of the old history are dropped');
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'e10: the storage–proxy link is cut until the log overflows; after reconnecting, is-overflow 1, hash-backup recovers',
  async (t) => {
    const g = await Group.start(t, 'rec-e10', { ldevBytes: 4 << 20, relayProxies: true });
    try {
      const { ok } = g;
      const c = await g.nbd();
      const held = await backedUp(t, g, c);

      await g.proxyRelays[0].cut();
      await writePastTheLog(t, c);
      await waitUntil(async () => (await ok('get-state', 'vol', 's0')) === 'Stopped', 'storage Stopped');
      await g.proxyRelays[0].open();
      await ok('kick-all');
      t.is(await ok('is-overflow', 'vol'), '1');

      const gid = await hashBackup(g);
      t.is(await ok('is-overflow', 'vol'), '0');
      await recovered(t, g, c, gid, held);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'e4: the log overflows while the storage is down; after its restart, is-overflow 1, hash-backup recovers',
  async (t) => {
    const g = await Group.start(t, 'rec-storage-down', { ldevBytes: 4 << 20 });
    try {
      const { ok } = g;
      const c = await g.nbd();
      const held = await backedUp(t, g, c);

      await g.storages[0].kill();
      await writePastTheLog(t, c);
      t.true((await g.wdevd.client.status('w0')).overflow, 'the wdev overflowed on its own');
      await g.storages[0].start();
      t.is(await ok('is-overflow', 'vol'), '1');
      await waitUntil(async () => (await ok('get-state', 'vol', 's0')) === 'Stopped', 'storage Stopped');

      const gid = await hashBackup(g);
      t.is(await ok('is-overflow', 'vol'), '0');
      await recovered(t, g, c, gid, held);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  "e6 with one archive: the archive's data is lost; InitVol there, reset-vol on the storage and a full backup start the history again and backup goes on",
  async (t) => {
    const g = await Group.start(t, 'rec-e6');
    try {
      const { ok } = g;
      const c = await g.nbd();
      await backedUp(t, g, c);

      await g.archives[0].kill();
      fs.rmSync(g.archives[0].dataDir, { recursive: true, force: true });
      await g.archives[0].start();
      t.is(await ok('get-state', 'vol', 'a0'), 'Clear', 'the archive forgot the volume');
      await g.writeRandom(c, 40);

      await ok('call', 'a0', 'InitVol', '{"volume":"vol"}');
      await ok('stop', 'vol', 's0', '--wait');
      t.is(await ok('reset-vol', 'vol', 's0'), 'SyncReady');
      const full = Number(
        (JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number }).gid,
      );
      t.is(
        await g.restoredHash('vol', full),
        await g.deviceHash(c),
        'the full backup restores to the device',
      );
      t.is(Math.min(...(await g.restorable('vol'))), full, 'the history starts again at the full backup');

      await g.writeRandom(c, 20);
      const next = Number(await ok('snapshot', 'vol', '--wait'));
      t.is(await g.restoredHash('vol', next), await g.deviceHash(c), 'backup goes on');
    } finally {
      await g.cleanup();
    }
  },
);
