// Secondary archives through walbc (docs/operations.md "Recovery runbook / The backup group"): synchronizing mode
// (n10), a synchronizing secondary that loses its data (e7), switching the primary archive with writes going on
// (r3), replacing a secondary (r4), and the primary losing its data while a secondary is synchronizing. Writes go
// through NBD; a snapshot is checked by restoring it on each archive and comparing with the device byte for byte.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import type { ArchiveStanding } from '../../src/controller/replicas';
import type { RawClient } from '../nbd-client';
import { Group, Writer } from '../group-fixture';
import { waitUntil } from '../waiting';

interface Prologue {
  g: Group;
  c: RawClient;
  /** The gid of the full backup to a0. */
  full: number;
  /** With `synchronizing`: a snapshot taken after it, restorable on a0 and a1. */
  synced?: number;
}

/**
 * Runs `body` on a new group of `archives` archives in which vol is backed up to a0 (init-vol, writes through an
 * NBD client, full backup); with `synchronizing`, a1 is then replicated with --sync, written to, and a snapshot
 * is restorable on both. The group is cleaned up however the body ends.
 */
async function withBackedUpGroup(
  t: ExecutionContext,
  name: string,
  spec: { archives: number; synchronizing?: boolean },
  body: (p: Prologue) => Promise<void>,
): Promise<void> {
  const g = await Group.start(t, name, { archives: spec.archives });
  try {
    const c = await g.nbd();
    await g.ok('init-vol', 'vol', 'w0');
    await g.writeRandom(c, 40);
    const full = Number(
      (JSON.parse(await g.ok('full-backup', 'vol', '--wait', '--json')) as { gid: number }).gid,
    );
    if (!spec.synchronizing) return await body({ g, c, full });
    await g.ok('replicate', 'vol', 'a0', 'a1', '--sync');
    await g.writeRandom(c, 20);
    const synced = Number(await g.ok('snapshot', 'vol', '--wait'));
    await restorableOn(g, synced, 'a1');
    await body({ g, c, full, synced });
  } finally {
    await g.cleanup();
  }
}

function restorableOn(g: Group, gid: number, archive: string): Promise<void> {
  return waitUntil(
    async () => (await g.restorable('vol', archive)).includes(gid),
    `gid ${gid} restorable on ${archive}`,
    60_000,
  );
}

/** The archives of `walbc status vol --json` (which exits 1 while a proxy gives up on an archive). */
async function standings(g: Group): Promise<ArchiveStanding[]> {
  return (JSON.parse((await g.walbc('status', 'vol', '--json')).stdout) as { archives: ArchiveStanding[] })
    .archives;
}

async function standing(g: Group, archive: string): Promise<ArchiveStanding> {
  const found = (await standings(g)).find((a) => a.archive === archive);
  if (!found) throw new Error(`walbc status has no line for ${archive}`);
  return found;
}

/** With the writes paused: `gid` restores to the device on every archive named. */
async function restoresToDevice(
  t: ExecutionContext,
  g: Group,
  c: RawClient,
  gid: number,
  archives: string[],
): Promise<void> {
  const device = await g.deviceHash(c);
  for (const a of archives)
    t.is(await g.restoredHash('vol', gid, a), device, `gid ${gid} on ${a} restores to the device`);
}

test.serial(
  'n10: replicate --sync during writes makes a1 synchronizing: snapshots become restorable on both archives and restore to the same bytes; after stop-synchronizing a1 stops advancing',
  (t) =>
    withBackedUpGroup(t, 'arc-n10', { archives: 2 }, async ({ g, c }) => {
      const { ok } = g;
      const writer = new Writer(g, c);
      writer.start();
      await ok('replicate', 'vol', 'a0', 'a1', '--sync');
      t.true((await standing(g, 'a1')).synchronizing, 'a1 is registered on every proxy');
      const during = Number(await ok('snapshot', 'vol', '--wait'));
      await restorableOn(g, during, 'a1');
      t.is(
        await g.restoredHash('vol', during, 'a1'),
        await g.restoredHash('vol', during, 'a0'),
        'a snapshot taken during the writes restores to the same bytes on both',
      );
      await writer.stop();
      const gid = Number(await ok('snapshot', 'vol', '--wait'));
      await restorableOn(g, gid, 'a1');
      await restoresToDevice(t, g, c, gid, ['a0', 'a1']);
      await waitUntil(async () => {
        const s = await standing(g, 'a1');
        return s.behind?.gids === 0 && s.behind.bytes === 0;
      }, 'walbc status shows a1 caught up');

      t.is(await ok('stop-synchronizing', 'vol', 'a1'), 'a1 no longer synchronizing vol (deleted on p0)');
      const a1Latest = (await g.restorable('vol', 'a1')).at(-1);
      await g.writeRandom(c, 20);
      const later = Number(await ok('snapshot', 'vol', '--wait'));
      await ok('kick-all');
      await new Promise((r) => setTimeout(r, 1000));
      t.is((await g.restorable('vol', 'a1')).at(-1), a1Latest, 'a1 stops advancing');
      const s = await standing(g, 'a1');
      t.false(s.synchronizing);
      t.true(s.behind!.gids > 0 && s.behind!.bytes > 0, `a1 is behind: ${JSON.stringify(s.behind)}`);
      await restoresToDevice(t, g, c, later, ['a0']);
    }),
);

test.serial(
  'e7: a synchronizing a1 loses its data; a snapshot is restorable on a0, not on a1; replicate --sync again, and every snapshot restores to the same bytes on both',
  (t) =>
    withBackedUpGroup(t, 'arc-e7', { archives: 2, synchronizing: true }, async ({ g, c, full, synced }) => {
      const { ok } = g;
      const before = synced!;

      await g.archives[1].kill();
      fs.rmSync(g.archives[1].dataDir, { recursive: true, force: true });
      await g.archives[1].start();
      await g.writeRandom(c, 20);
      const lost = Number(await ok('snapshot', 'vol', '--wait'));
      t.is(await ok('get-state', 'vol', 'a1'), 'Clear', 'a1 forgot the volume');
      t.true((await g.restorable('vol', 'a0')).includes(lost), 'the primary goes on');

      await ok('replicate', 'vol', 'a0', 'a1', '--sync');
      await g.writeRandom(c, 20);
      const after = Number(await ok('snapshot', 'vol', '--wait'));
      await restorableOn(g, after, 'a1');
      const gids = [full, before, lost, after];
      t.deepEqual(
        await g.restoredHashes('vol', gids, 'a1'),
        await g.restoredHashes('vol', gids, 'a0'),
        'a1 restores every snapshot to what a0 does',
      );
      await restoresToDevice(t, g, c, after, ['a1']);
    }),
);

test.serial(
  'r3: the primary switches from a0 to a2 with writes going on (switch-primary, the storage restarted with --archive a2), a snapshot and a hash backup then go to a2; and back to a0',
  (t) =>
    withBackedUpGroup(t, 'arc-r3', { archives: 3 }, async ({ g, c, full }) => {
      const { ok } = g;
      const held = await g.restoredHashes('vol', [full]);
      const writer = new Writer(g, c);
      writer.start();

      /** switch-primary to a<to> from a<from>, restarting the storage with it as soon as it synchronizes. */
      const switchTo = async (from: number, to: number) => {
        const switching = g.walbc('switch-primary', `a${to}`, '--timeout', '300');
        switching.catch(() => undefined); // awaited below; a failed wait must not leave it unhandled
        await waitUntil(
          async () => (await standings(g)).some((a) => a.archive === `a${to}` && a.synchronizing),
          `a${to} synchronizing`,
          120_000,
        );
        await g.restartStorage(0, g.proxies, g.archives[to]);
        const r = await switching;
        t.is(r.code, 0, r.stderr);
        t.regex(r.stderr, new RegExp(`WALB_ARCHIVE=${g.archives[to].address}`), 'it says how to switch');
        t.is(r.stdout.trim(), `a${to} is the primary of vol; list it first in the layout`);
        t.is(
          (JSON.parse(await ok('call', 's0', 'ListProxies')) as { archive: string }).archive,
          g.archives[to].address,
          'the storage reports its new archive',
        );
        t.false((await standing(g, `a${from}`)).synchronizing, `a${from} stopped synchronizing`);
        g.writeLayout(to);
      };

      await switchTo(0, 2);
      const snap = Number(await ok('snapshot', 'vol', '--wait'));
      await writer.stop();
      await ok('stop', 'vol', 's0', '--wait');
      const hashed = Number(
        (JSON.parse(await ok('hash-backup', 'vol', '--wait', '--json')) as { gid: number }).gid,
      );
      await restoresToDevice(t, g, c, hashed, ['a2']);
      t.false((await g.restorable('vol', 'a0')).includes(snap), 'the snapshot went to a2 only');
      t.false((await g.restorable('vol', 'a0')).includes(hashed), 'the hash backup went to a2 only');
      t.deepEqual(await g.restoredHashes('vol', [full], 'a2'), held, 'a2 has the full backup of a0');

      writer.start();
      await switchTo(2, 0);
      await writer.stop();
      const back = Number(await ok('snapshot', 'vol', '--wait'));
      await restoresToDevice(t, g, c, back, ['a0']);
      t.deepEqual(await g.restoredHashes('vol', [full]), held, 'a0 still restores the full backup');
    }),
);

test.serial(
  'r4: the synchronizing secondary a1 is replaced by a2 (replace-archive) and a2 by a1 again once it no longer synchronizes; the latest image is preserved at each step',
  (t) =>
    withBackedUpGroup(t, 'arc-r4', { archives: 3, synchronizing: true }, async ({ g, c, synced }) => {
      const { ok } = g;
      const latest = synced!;
      const held = await g.restoredHashes('vol', [latest], 'a1');

      const writer = new Writer(g, c);
      writer.start();
      t.is(
        await ok('replace-archive', 'vol', 'a1', 'a2'),
        'a2 replaces a1 for vol (synchronizing); a1 cleared',
      );
      await writer.stop();
      t.is(await ok('get-state', 'vol', 'a1'), 'Clear');
      t.true((await standing(g, 'a2')).synchronizing, 'a2 took over the synchronizing');
      t.deepEqual(await g.restoredHashes('vol', [latest], 'a2'), held, 'a2 has the latest image of a1');
      const next = Number(await ok('snapshot', 'vol', '--wait'));
      await restorableOn(g, next, 'a2');
      await restoresToDevice(t, g, c, next, ['a0', 'a2']);

      await ok('stop-synchronizing', 'vol', 'a2');
      const held2 = await g.restoredHashes('vol', [next], 'a2');
      t.is(await ok('replace-archive', 'vol', 'a2', 'a1'), 'a1 replaces a2 for vol; a2 cleared');
      t.is(await ok('get-state', 'vol', 'a2'), 'Clear');
      t.false((await standing(g, 'a1')).synchronizing, 'a1 does not synchronize, as a2 did not');
      t.deepEqual(await g.restoredHashes('vol', [next], 'a1'), held2, 'a1 has the latest image of a2');
    }),
);

test.serial(
  'the primary a0 loses its data while a1 is synchronizing: a1 becomes the primary (stop-synchronizing a0, the storage restarted with --archive a1) with no snapshot lost, and a0 becomes its synchronizing secondary',
  (t) =>
    withBackedUpGroup(
      t,
      'arc-lost-primary',
      { archives: 2, synchronizing: true },
      async ({ g, c, full, synced }) => {
        const { ok } = g;
        const snap = synced!;
        const held = await g.restoredHashes('vol', [full, snap]);

        await g.archives[0].kill();
        fs.rmSync(g.archives[0].dataDir, { recursive: true, force: true });
        await g.archives[0].start();
        await ok('stop-synchronizing', 'vol', 'a0');
        await g.restartStorage(0, g.proxies, g.archives[1]);
        g.writeLayout(1);
        t.deepEqual(await g.restoredHashes('vol', [full, snap], 'a1'), held, 'no snapshot is lost');
        await g.writeRandom(c, 20);
        const next = Number(await ok('snapshot', 'vol', '--wait'));
        await restoresToDevice(t, g, c, next, ['a1']);

        await ok('replicate', 'vol', 'a1', 'a0', '--sync');
        await g.writeRandom(c, 20);
        const last = Number(await ok('snapshot', 'vol', '--wait'));
        await restorableOn(g, last, 'a0');
        await restoresToDevice(t, g, c, last, ['a1', 'a0']);
      },
    ),
);
