// The archive's maintenance through walbc on a running group [s0] [p0] [a0] (docs/servers.md §6.6, §6.7;
// scenarios n5, n6 and n13 of docs/servers.md §12): apply up to a snapshot taken during writes keeps it and the
// later snapshots restoring to the same bytes and drops the older ones, refuses restores while it runs, and a
// SIGKILL of the archive half-way through an apply is finished at its next start; a run of diffs merges into one
// without changing a restore; disabled snapshots leave the restorable list and come back when enabled. The
// archive's apply is throttled (applyBytesPerSec) so that a test can catch it half-way.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Group } from '../group-fixture';
import { operationHalfWay } from '../system-harness';

const MiB = 1 << 20;

interface Restorable {
  gid: number;
  explicit: boolean;
}

test.serial(
  'n5, n6, n13: apply (also killed half-way), merge and disabled snapshots never change what a restorable snapshot restores to',
  async (t) => {
    // 2 MiB/s: the apply killed below runs for about 10 s, time for the refused restore's walbc on a loaded machine.
    const g = await Group.start(t, 'maintenance', { archiveConfig: { applyBytesPerSec: 2 * MiB } });
    try {
      const { ok, walbc } = g;
      const restorable = async (all = false) =>
        (
          JSON.parse(await ok('get-restorable', 'vol', '--json', ...(all ? ['--all'] : []))) as Restorable[]
        ).map((r) => Number(r.gid));
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 40);
      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };

      // n5: a snapshot taken while writes go on, another one after them.
      const writing = g.writeRandom(c, 120);
      const during = Number(await ok('snapshot', 'vol', '--wait'));
      await writing;
      const after = Number(await ok('snapshot', 'vol', '--wait'));
      t.is(await g.restoredHash('vol', after), await g.deviceHash(c));
      const before = await g.restoredHashes('vol', [during, after]);
      t.is(await ok('apply', 'vol', String(during), '--wait'), `applied up to gid ${during}`);
      t.deepEqual(await restorable(), [during, after], 'the base is the applied snapshot');
      t.true(
        (await restorable(true)).every((gid) => gid >= during),
        'nothing older is restorable',
      );
      t.true(full.gid < during);
      for (const gid of [during, after])
        t.is(await g.restoredHash('vol', gid), before.get(gid)!, `gid ${gid}`);

      // n5, killed: several diffs, the archive killed half-way through applying them; its start finishes the apply.
      const gids: number[] = [];
      for (let i = 0; i < 3; i++) {
        await g.writeRandom(c, 100);
        gids.push(Number(await ok('snapshot', 'vol', '--wait')));
      }
      const last = gids[gids.length - 1];
      const kept = await g.restoredHash('vol', last);
      t.is(kept, await g.deviceHash(c));
      const op = JSON.parse(await ok('apply', 'vol', String(last), '--json')) as { id: string };
      await operationHalfWay(g.archives[0].address, op.id);
      const refused = await walbc('restore', 'vol', String(last));
      t.is(refused.code, 1, 'no restore while an apply runs');
      t.regex(refused.stderr, /applying/);
      await g.archives[0].kill();
      const meta = JSON.parse(
        fs.readFileSync(path.join(g.archives[0].dataDir, 'vol', 'meta.json'), 'utf8'),
      ) as { base: { snapE?: { gidB: number } } };
      t.is(meta.base.snapE?.gidB, last, 'killed while applying');
      await g.archives[0].start();
      t.deepEqual(await restorable(), [last], 'the apply was finished at start');
      t.is(await g.restoredHash('vol', last), kept, 'and the bytes are those of the snapshot');
      await ok('kick-all');

      // n6: three diffs whose inner snapshots are made implicit merge into one; the restores do not change.
      const run = [last];
      for (let i = 0; i < 3; i++) {
        await g.writeRandom(c, 30);
        run.push(Number(await ok('snapshot', 'vol', '--wait')));
      }
      const [k0, k1, k2, k3] = run;
      const ends = await g.restoredHashes('vol', [k0, k3]);
      t.is(ends.get(k3), await g.deviceHash(c));
      await ok('disable-snapshot', 'vol', String(k1), String(k2));
      t.deepEqual(await restorable(), [k0, k3], 'the disabled snapshots are hidden');
      t.true((await restorable(true)).includes(k1), 'and listed as implicit');
      t.regex(
        await ok('merge', 'vol', String(k0), String(k3), '--wait'),
        new RegExp(`merged: \\|${k0}\\|.*\\|${k3}\\|`),
      );
      t.deepEqual(await restorable(true), [k0, k3], 'the implicit snapshots inside the run are gone');
      for (const gid of [k0, k3]) t.is(await g.restoredHash('vol', gid), ends.get(gid)!, `gid ${gid}`);
      t.is(await ok('gc-diff', 'vol'), '0 wdiff(s) deleted', 'the merge left nothing behind');

      // n13: five snapshots, four disabled and enabled again.
      const five: number[] = [];
      for (let i = 0; i < 5; i++) {
        await g.writeRandom(c, 5);
        five.push(Number(await ok('snapshot', 'vol', '--wait')));
      }
      const listed = await restorable();
      await ok('disable-snapshot', 'vol', ...five.slice(0, 4).map(String));
      t.deepEqual(
        await restorable(),
        [k0, k3, five[4]],
        'the disabled ones leave; the oldest and the latest stay',
      );
      await ok('enable-snapshot', 'vol', ...five.slice(0, 4).map(String));
      t.deepEqual(await restorable(), listed, 'all back');
      t.is(await g.restoredHash('vol', five[4]), await g.deviceHash(c));

      const rows = (
        JSON.parse(await ok('status', 'vol', '--json')) as {
          rows: { role: string; archive?: { disk: { base: number; diffs: number; restored: number } } }[];
        }
      ).rows;
      const disk = rows.find((r) => r.role === 'archive')!.archive!.disk;
      t.true(disk.base > 0 && disk.diffs > 0, `disk usage ${JSON.stringify(disk)}`);
      t.is(disk.restored, 0, 'every restored image was deleted');
    } finally {
      await g.cleanup();
    }
  },
);
