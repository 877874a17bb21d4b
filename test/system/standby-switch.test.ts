// Standby storages made target by a hash backup (docs/servers.md §4.2, §7.6), through walbc, with writes through NBD
// and restores compared with the device byte for byte: n3 (go standby, write, hash backup), n12 (the target and
// standby of a RAID1 pair swapped both ways while writes go on to both legs) and r1 (a storage host replaced by
// another and back).
import test from 'ava';
import type { RawClient } from '../nbd-client';
import { Group } from '../group-fixture';

test.serial(
  'n3: go-standby, writes that are not shipped, then hash-backup: the new snapshot restores to the device, the full backup to what it held',
  async (t) => {
    const g = await Group.start(t, 'standby-n3');
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 40);
      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      const fullHash = await g.restoredHash('vol', full.gid);
      await ok('go-standby', 'vol');
      t.is(await ok('get-state', 'vol', 's0'), 'Standby');
      await g.writeRandom(c, 40);
      const hashed = JSON.parse(await ok('hash-backup', 'vol', '--wait', '--json')) as { gid: number };
      t.is(await ok('get-state', 'vol', 's0'), 'Target');
      t.is(await g.restoredHash('vol', hashed.gid), await g.deviceHash(c));
      t.is(await g.restoredHash('vol', full.gid), fullHash);
    } finally {
      await g.cleanup();
    }
  },
);

/** Makes `to` the target of the volume instead of `from` (WalB's go_standby, then hash_backup on `to`); returns the
 * gid of the hash backup, once restorable. */
async function switchTarget(g: Group, from: string, to: string): Promise<number> {
  await g.ok('go-standby', 'vol', '--storage', from);
  const r = JSON.parse(await g.ok('hash-backup', 'vol', '--storage', to, '--wait', '--json')) as {
    gid: number;
  };
  return Number(r.gid);
}

/** Writes on both legs until `stop` resolves (at most `max` rounds). */
async function writeUntil(g: Group, legs: RawClient[], stop: Promise<unknown>, max = 200): Promise<void> {
  let done = false;
  void stop.finally(() => (done = true));
  for (let i = 0; i < max && !done; i++) await g.writeRandom(legs, 5);
}

test.serial(
  'n12: the target and standby of a RAID1 pair swap both ways through go-standby and hash-backup while writes go on to both legs',
  async (t) => {
    const g = await Group.start(t, 'standby-n12', { storages: 2 });
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0', '--storage', 's0');
      await ok('init-storage', 'vol', 'w1', '--storage', 's1');
      t.is(await ok('get-state', 'vol', 's1'), 'Standby');
      const legs = [await g.nbd(0), await g.nbd(1)];
      await g.writeRandom(legs, 40);
      const full = JSON.parse(await ok('full-backup', 'vol', '--storage', 's0', '--wait', '--json')) as {
        gid: number;
      };
      const fullHash = await g.restoredHash('vol', full.gid);

      for (const [from, to, leg] of [
        ['s0', 's1', 1],
        ['s1', 's0', 0],
      ] as const) {
        const swap = switchTarget(g, from, to);
        await writeUntil(g, legs, swap);
        const gid = await swap;
        t.is(await ok('get-state', 'vol', to), 'Target');
        t.is(await ok('get-state', 'vol', from), 'Standby');
        // The writes made during the swap reach the archive through the new target's logs.
        const after = Number(await ok('snapshot', 'vol', '--storage', to, '--wait'));
        t.true(after > gid);
        const device = await g.deviceHash(legs[leg]);
        t.is(await g.deviceHash(legs[1 - leg]), device, 'both legs hold the same data');
        t.is(
          await g.restoredHash('vol', after),
          device,
          `${to} as target: the snapshot restores to the device`,
        );
      }
      t.is(await g.restoredHash('vol', full.gid), fullHash, 'the full backup still restores to what it held');
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'r1: a storage host is replaced (init-storage on the new one, go-standby, hash-backup, clear the old) and back, the snapshots restoring to the device',
  async (t) => {
    const g = await Group.start(t, 'standby-r1', { storages: 2 });
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0', '--storage', 's0');
      const legs = [await g.nbd(0), await g.nbd(1)];
      await g.writeRandom(legs, 40);
      await ok('full-backup', 'vol', '--storage', 's0', '--wait');

      for (const [from, to, leg] of [
        ['s0', 's1', 1],
        ['s1', 's0', 0],
      ] as const) {
        await ok('init-storage', 'vol', `w${leg}`, '--storage', to);
        await g.writeRandom(legs, 20);
        await switchTarget(g, from, to);
        await ok('stop', 'vol', from, '--wait');
        await ok('clear-vol', 'vol', from);
        t.is(await ok('get-state', 'vol', from), 'Clear');
        await g.writeRandom(legs, 20);
        const gid = Number(await ok('snapshot', 'vol', '--storage', to, '--wait'));
        t.is(await g.restoredHash('vol', gid), await g.deviceHash(legs[leg]), `${to} backs the volume up`);
      }
    } finally {
      await g.cleanup();
    }
  },
);
