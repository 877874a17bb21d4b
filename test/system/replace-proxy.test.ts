// Replacing a proxy host (r2, docs/operations.md "Recovery runbook / The backup group"): a new proxy takes the
// place of p0 and then p0 takes it back, through walbc, while writes go on through NBD; snapshots taken after each
// step restore to the device byte for byte and the ones taken before still restore to what they held.
import test from 'ava';
import { Group, Writer } from '../group-fixture';
import type { ServerProc } from '../system-harness';

test.serial(
  'r2: a new proxy p2 replaces p0 (copy-archive-info, stop empty, clear-vol, storage restarted with the new proxy list) and p0 comes back the same way, writes going on; snapshots after each step restore to the device, older ones to what they held',
  async (t) => {
    const g = await Group.start(t, 'rec-r2', { proxies: 2 });
    try {
      const { ok } = g;
      const c = await g.nbd();
      await ok('init-vol', 'vol', 'w0');
      await g.writeRandom(c, 40);
      const full = Number(
        (JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number }).gid,
      );
      const held = await g.restoredHashes('vol', [full]);
      const writer = new Writer(g, c);
      writer.start();

      /** `to` takes the place of `from` on the storage, whose proxy list becomes `proxies`. */
      const replace = async (vol: string, from: string, to: string, proxies: ServerProc[]) => {
        t.regex(await ok('copy-archive-info', vol, from, to), new RegExp(`^${to}: a0 registered, started$`));
        t.is(await ok('get-state', vol, to), 'Started');
        await ok('stop', vol, from, '--mode', 'empty', '--wait');
        t.is(await ok('clear-vol', vol, from), 'Clear');
        await g.restartStorage(0, proxies);
      };
      /** With the writes paused: a snapshot restores to the device, and it went through `proxy`. */
      const snapshotThrough = async (proxy: ServerProc) => {
        await writer.stop();
        const gid = Number(await ok('snapshot', 'vol', '--wait'));
        t.is(await g.restoredHash('vol', gid), await g.deviceHash(c), `gid ${gid} restores to the device`);
        t.true(
          g.storages[0].stderr.includes(`"event":"wlog-sent","volume":"vol","proxy":"${proxy.address}"`),
          `the logs went through ${proxy.address}`,
        );
        held.set(gid, await g.restoredHash('vol', gid));
        writer.start();
      };

      const p2 = await g.addProxy();
      await replace('vol', 'p0', 'p2', [p2, g.proxies[1]]);
      await snapshotThrough(p2);
      t.is(await ok('get-state', 'vol', 'p0'), 'Clear');

      await replace('vol', 'p2', 'p0', [g.proxies[0], g.proxies[1]]);
      await snapshotThrough(g.proxies[0]);
      t.is(await ok('get-state', 'vol', 'p2'), 'Clear');

      await writer.stop();
      const restorable = await g.restorable('vol');
      for (const gid of held.keys()) t.true(restorable.includes(gid), `gid ${gid} still restorable`);
      t.deepEqual(
        await g.restoredHashes('vol', [...held.keys()]),
        held,
        'every snapshot restores to what it held',
      );
    } finally {
      await g.cleanup();
    }
  },
);
