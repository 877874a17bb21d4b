// The archive's maintenance worker on a running group (docs/servers.md §6.8): with a short interval it merges the
// runs of diffs whose snapshots were made implicit, applies the snapshots older than its keep period, shows each task
// as an operation and in walbc status, finishes an apply cut by a SIGKILL at its next start, and never applies past
// the latest gid of a secondary archive that is behind (stopped); and walbc's merge by size (docs/servers.md §6.6).
// Every snapshot that stays restorable restores to the same bytes before and after, and the latest one to the device.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Group } from '../group-fixture';
import type { RawClient } from '../nbd-client';
import { operationHalfWay } from '../system-harness';
import { waitUntil } from '../waiting';

const MiB = 1 << 20;

interface Op {
  id: string;
  kind: string;
  state: string;
  result: string;
}

/** The operations of a0, finished ones too. */
async function operations(g: Group): Promise<Op[]> {
  return JSON.parse(await g.ok('operations', 'a0', '--finished', '--json')) as Op[];
}

/** What a0's worker says of the volume in walbc status. */
async function maintenanceLine(g: Group, archive = 'a0'): Promise<string> {
  const rows = (
    JSON.parse((await g.walbc('status', 'vol', '--json')).stdout) as {
      rows: { server: string; archive?: { maintenance?: string } }[];
    }
  ).rows;
  return rows.find((r) => r.server === archive)?.archive?.maintenance ?? '';
}

/** Rewrites the archives' config file and restarts a0 on it (SIGKILL, then start). */
async function restartA0With(g: Group, config: object): Promise<void> {
  fs.writeFileSync(path.join(g.dir, 'archive.json'), JSON.stringify(config));
  await g.archives[0].kill();
  await g.archives[0].start();
}

const worker = { enabled: true, intervalSec: 1, mergeDiffs: 1, mergeMaxBytes: 64 * MiB };

/**
 * The prologue of every test: init-vol, writes through NBD and a full backup, then `count` snapshots, each after
 * `writes` random writes. The NBD client and the snapshots' gids.
 */
async function backedUp(g: Group, count: number, writes: number): Promise<{ c: RawClient; snaps: number[] }> {
  await g.ok('init-vol', 'vol', 'w0');
  const c = await g.nbd();
  await g.writeRandom(c, 40);
  await g.ok('full-backup', 'vol', '--wait');
  const snaps: number[] = [];
  for (let i = 0; i < count; i++) {
    await g.writeRandom(c, writes);
    snaps.push(Number(await g.ok('snapshot', 'vol', '--wait')));
  }
  return { c, snaps };
}

test.serial(
  'the worker merges runs of implicit snapshots and applies the snapshots older than its keep period by itself, also across a SIGKILL; what stays restorable restores to the same bytes',
  async (t) => {
    const g = await Group.start(t, 'mworker', {
      archiveConfig: { maintenance: { ...worker, keepPeriodSec: 3600 } },
    });
    try {
      const { ok } = g;
      const { c, snaps } = await backedUp(g, 5, 30);
      const [s1, s2, s3, s4, s5] = snaps;
      const device = await g.deviceHash(c);
      const kept = await g.restoredHashes('vol', [s1, s3, s5]);
      t.is(kept.get(s5), device);
      t.regex(await maintenanceLine(g), /^idle: /, 'every snapshot explicit and young: nothing to do');

      // Merge: s2 and s4 made implicit; the worker merges s1→s3 and s3→s5 by itself.
      await ok('disable-snapshot', 'vol', String(s2), String(s4));
      await waitUntil(async () => {
        const all = await g.restorable('vol');
        return !all.includes(s2) && !all.includes(s4);
      }, 'the worker merged across s2 and s4');
      await waitUntil(async () => {
        const all = await g.restorable('vol');
        return all.filter((gid) => gid >= s1 && gid <= s5).join() === [s1, s3, s5].join();
      }, 'one diff from s1 to s3 and one from s3 to s5: the implicit snapshots inside them are gone');
      const merges = (await operations(g)).filter((o) => o.kind === 'merge');
      t.true(merges.length > 0, 'the merges are operations of a0');
      t.true(
        merges.every((o) => o.state === 'done'),
        JSON.stringify(merges),
      );
      await waitUntil(
        async () => /last task: merge of .* done/.test(await maintenanceLine(g)),
        'walbc status shows the merge',
      );
      for (const gid of [s1, s3, s5]) t.is(await g.restoredHash('vol', gid), kept.get(gid)!, `gid ${gid}`);

      // Apply: a keep period of 2 s and a slow apply; a0 killed half-way through the worker's apply finishes it
      // at its start.
      await restartA0With(g, { applyBytesPerSec: MiB / 2, maintenance: { ...worker, keepPeriodSec: 2 } });
      let apply: Op | undefined;
      await waitUntil(async () => {
        apply = (await operations(g)).find((o) => o.kind === 'apply' && o.state === 'running');
        return apply !== undefined;
      }, "the worker's apply");
      await operationHalfWay(g.archives[0].address, apply!.id);
      await g.archives[0].kill();
      const meta = JSON.parse(
        fs.readFileSync(path.join(g.archives[0].dataDir, 'vol', 'meta.json'), 'utf8'),
      ) as { base: { snapE?: { gidB: number } } };
      t.is(meta.base.snapE?.gidB, s5, 'killed while applying up to s5');
      await g.archives[0].start();
      t.deepEqual(await g.restorable('vol'), [s5], 'the apply was finished at start');
      t.is(await g.restoredHash('vol', s5), device, 'and s5 restores to the device');

      // New snapshots: applied once older than 2 s.
      await ok('kick-all');
      await g.writeRandom(c, 20);
      const s6 = Number(await ok('snapshot', 'vol', '--wait'));
      const now = await g.deviceHash(c);
      // The restorable list shows s6 alone as soon as the apply begins; a restore waits until it is done.
      const applied = new RegExp(`last task: apply up to gid ${s6}: operation \\S+ done`);
      await waitUntil(async () => applied.test(await maintenanceLine(g)), 'the worker applied up to s6');
      t.deepEqual(await g.restorable('vol'), [s6]);
      t.is(await g.restoredHash('vol', s6), now);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'walbc merge --max-bytes merges across implicit snapshots; the worker never applies past the latest gid of a stopped secondary, and applies once it caught up; the latest snapshot restores to the device on both',
  async (t) => {
    const g = await Group.start(t, 'mworker-sec', { archives: 2 });
    try {
      const { ok } = g;

      // walbc's merge by size (no worker yet): the run across an implicit snapshot becomes one diff.
      const { c, snaps: run } = await backedUp(g, 3, 10);
      const [x1, x2, x3] = run;
      const ends = await g.restoredHashes('vol', [x1, x3]);
      t.is(ends.get(x3), await g.deviceHash(c));
      t.is((await g.walbc('merge', 'vol', String(x1), '--max-bytes', '1M')).code, 2, 'gids or a size');
      await ok('disable-snapshot', 'vol', String(x2));
      t.regex(
        await ok('merge', 'vol', '--max-bytes', '64M', '--wait'),
        new RegExp(`^merged: .*\\|${x1}\\|---->\\|${x3}\\|`),
      );
      t.deepEqual(
        (await g.restorable('vol')).filter((gid) => gid >= x1),
        [x1, x3],
        'the implicit snapshots between x1 and x3 are gone',
      );
      for (const gid of [x1, x3]) t.is(await g.restoredHash('vol', gid), ends.get(gid)!, `gid ${gid}`);

      await ok('replicate', 'vol', 'a0', 'a1', '--sync');
      await g.writeRandom(c, 20);
      const s1 = Number(await ok('snapshot', 'vol', '--wait'));
      await waitUntil(async () => (await g.restorable('vol', 'a1')).includes(s1), 's1 on a1');
      await ok('stop', 'vol', 'a1');
      const later: number[] = [];
      for (let i = 0; i < 2; i++) {
        await g.writeRandom(c, 20);
        later.push(Number(await ok('snapshot', 'vol', '--wait')));
      }
      const [s2, s3] = later;
      const kept = await g.restoredHashes('vol', [s1, s2, s3]);

      // Only a0 runs the worker (a1 read the config file before), with a1 as its secondary.
      await restartA0With(g, {
        maintenance: { ...worker, keepPeriodSec: 1, secondaries: [g.archives[1].address] },
      });
      await waitUntil(
        async () => /apply held at gid/.test(await maintenanceLine(g)),
        'the worker holds the apply at a1',
      );
      t.regex(await maintenanceLine(g), new RegExp(`apply held at gid ${s1} by a secondary`));
      const held = await g.restorable('vol');
      t.true(
        [s1, s2, s3].every((gid) => held.includes(gid)),
        `nothing past s1 was applied on a0: ${held.join(' ')}`,
      );
      for (const gid of [s1, s2, s3]) t.is(await g.restoredHash('vol', gid), kept.get(gid)!, `gid ${gid}`);

      await ok('start', 'vol', 'a1');
      await ok('kick-all');
      await waitUntil(async () => (await g.restorable('vol', 'a1')).includes(s3), 's3 on a1');
      await waitUntil(
        async () => (await g.restorable('vol')).join() === String(s3),
        'the worker applied up to s3 on a0',
      );
      const device = await g.deviceHash(c);
      t.is(await g.restoredHash('vol', s3, 'a0'), device);
      t.is(await g.restoredHash('vol', s3, 'a1'), device);
      t.is(kept.get(s3), device);
    } finally {
      await g.cleanup();
    }
  },
);
