// Hash backup (docs/servers.md §7.6) through walbc on a running group, with writes through NBD and restores compared
// with the device byte for byte: recovery from an overflow (e4), the refusal onto a reset archive (m2), and a hash
// backup cut half-way by cancel, by a SIGKILL of either end and by a cut link (e13) — each time both ends roll back,
// the restorable list is unchanged, and a rerun succeeds.
import test from 'ava';
import crypto from 'node:crypto';
import { P } from '../nbd-client';
import { Group } from '../group-fixture';
import { operationHalfWay } from '../system-harness';
import { waitUntil } from '../waiting';

/** The bytes the storage's last hash backup sent, from its log. */
function sentBytes(stderr: string): number {
  const lines = stderr.split('\n').filter((l) => l.includes('"event":"hash-backup-done"'));
  if (!lines.length) throw new Error('no hash-backup-done in the storage log');
  return (JSON.parse(lines[lines.length - 1]) as { sentBytes: number }).sentBytes;
}

test.serial(
  'e4: the log overflows while the proxy is down; is-overflow, then hash-backup sends only what changed, the new snapshot restores to the device and the older ones to what they held',
  async (t) => {
    const g = await Group.start(t, 'hash-e4', { ldevBytes: 4 << 20 });
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 40);
      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      await g.writeRandom(c, 40);
      const g1 = Number(await ok('snapshot', 'vol', '--wait'));
      const before = {
        [full.gid]: await g.restoredHash('vol', full.gid),
        [g1]: await g.restoredHash('vol', g1),
      };
      t.is(before[g1], await g.deviceHash(c));

      // Both proxies down (here the only one): the log fills up and overflows; writes never fail.
      await g.proxies[0].kill();
      for (let i = 0; i < 12; i++)
        t.is(await c.writeAt(i + 1, (i % 6) << 20, crypto.randomBytes(1 << 20)), 0, 'writes never fail');
      t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
      await waitUntil(async () => (await ok('is-overflow', 'vol')) === '1', 'overflow');
      await waitUntil(async () => (await ok('get-state', 'vol', 's0')) === 'Stopped', 'storage Stopped');
      await g.proxies[0].start();

      const hashed = JSON.parse(await ok('hash-backup', 'vol', '--wait', '--json')) as { gid: number };
      t.true(hashed.gid > g1, 'gids continue above the archive');
      t.is(await ok('is-overflow', 'vol'), '0');
      t.is(await ok('get-state', 'vol', 's0'), 'Target');
      t.is(
        await g.restoredHash('vol', hashed.gid),
        await g.deviceHash(c),
        'the hash backup restores to the device',
      );
      // 6 MiB were rewritten; the other 10 MiB of the device were equal and not sent.
      const sent = sentBytes(g.storages[0].stderr);
      t.true(sent >= 6 << 20 && sent <= 7 << 20, `sent ${sent} bytes`);
      for (const gid of [full.gid, g1]) {
        t.true((await g.restorable('vol')).includes(gid), `gid ${gid} still restorable`);
        t.is(await g.restoredHash('vol', gid), before[gid], `gid ${gid} restores to what it held`);
      }

      // Backup goes on as before.
      await g.writeRandom(c, 40);
      const g2 = Number(await ok('snapshot', 'vol', '--wait'));
      t.is(await g.restoredHash('vol', g2), await g.deviceHash(c));
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'm2: a hash backup onto a reset archive is refused and changes nothing there; a full backup then works',
  async (t) => {
    const g = await Group.start(t, 'hash-m2');
    try {
      const { ok, walbc } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 20);
      await ok('full-backup', 'vol', '--wait');
      await ok('stop', 'vol', 'a0', '--wait');
      t.is(await ok('reset-vol', 'vol', 'a0'), 'SyncReady');
      await ok('stop', 'vol', 's0', '--wait');

      const refused = await walbc('hash-backup', 'vol', '--wait');
      t.is(refused.code, 1, refused.stderr);
      t.regex(refused.stderr, /refused the hash backup: BAD_STATE volume vol is SyncReady, needs Archived/);
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      t.is(await ok('get-state', 'vol', 'a0'), 'SyncReady');

      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      t.is(await g.restoredHash('vol', full.gid), await g.deviceHash(c));
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'e13: a hash backup cut half-way (cancel, archive killed, storage killed, link cut) leaves the storage SyncReady and the archive Archived with its restorable list; a rerun with writes going on restores to the device',
  async (t) => {
    // The scan is throttled so that it stays half-way for about 16 s, long enough for the checks below and the cut
    // on a loaded machine, where each walbc takes seconds: the archive sends hashes of 16 MiB of image per message,
    // so the second half starts after 16 MiB at the limit.
    const size = 32 << 20;
    const g = await Group.start(t, 'hash-e13', {
      ddevBytes: size,
      storageConfig: { fullScanBytesPerSec: 1 << 20 },
      relayArchive: true,
    });
    try {
      const { ok, walbc } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 40, size);
      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      const before = await g.restorable('vol');
      const fullHash = await g.restoredHash('vol', full.gid);
      await ok('stop', 'vol', 's0', '--wait');
      await g.writeRandom(c, 40, size);

      const start = async () => {
        const r = JSON.parse(await ok('hash-backup', 'vol', '--json')) as { operation: { id: string } };
        await operationHalfWay(g.storages[0].address, r.operation.id);
        // Both at once, so that the cut still lands half-way.
        const [archiveState, list] = await Promise.all([ok('get-state', 'vol', 'a0'), g.restorable('vol')]);
        t.is(archiveState, 'HashSync');
        t.deepEqual(list, before, 'the restorable list does not change meanwhile');
        return r.operation.id;
      };
      const rolledBack = async (what: string) => {
        await waitUntil(
          async () => (await ok('get-state', 'vol', 's0')) === 'SyncReady',
          `${what}: s0 SyncReady`,
        );
        await waitUntil(
          async () => (await ok('get-state', 'vol', 'a0')) === 'Archived',
          `${what}: a0 Archived`,
        );
        t.deepEqual(await g.restorable('vol'), before, `${what}: the restorable list is unchanged`);
      };

      const cancelled = await start();
      await ok('cancel', 's0', cancelled);
      const watched = await walbc('watch', 's0', cancelled, '--json');
      t.is(watched.code, 1);
      t.regex(watched.stdout, /"state": "cancelled"/);
      await rolledBack('cancel');

      const archiveDies = await start();
      await g.archives[0].kill();
      t.regex((await walbc('watch', 's0', archiveDies, '--json')).stdout, /"state": "failed"/);
      await g.archives[0].start();
      await rolledBack('archive killed');

      await start();
      await g.storages[0].kill();
      await g.storages[0].start();
      await rolledBack('storage killed');

      const cut = await start();
      await g.archiveRelay!.cut();
      t.regex((await walbc('watch', 's0', cut, '--json')).stdout, /"state": "failed"/);
      await rolledBack('link cut');
      await g.archiveRelay!.open();

      // The rerun, with writes going on during the scan: they reach the archive as logs.
      const rerun = walbc('hash-backup', 'vol', '--wait', '--json');
      await g.writeRandom(c, 60, size);
      const done = await rerun;
      t.is(done.code, 0, done.stderr);
      const gid = Number((JSON.parse(done.stdout) as { gid: number }).gid);
      const last = Number(await ok('snapshot', 'vol', '--wait'));
      t.true(last > gid);
      t.is(
        await g.restoredHash('vol', last),
        await g.deviceHash(c, size),
        'the writes during the scan arrived',
      );
      t.is(await g.restoredHash('vol', full.gid), fullHash, 'the full backup still restores to what it held');
    } finally {
      await g.cleanup();
    }
  },
);
