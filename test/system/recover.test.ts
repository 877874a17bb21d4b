// walbc recover on every case of the recovery runbook (docs/operations.md "Recovery runbook / The backup group"),
// each made on a running group the real way (SIGKILL, a data directory deleted, a proxy's queue deleted, a log
// overflowed, a volume stopped on the archive): `walbc recover --dry-run` prints the plan the runbook gives, `walbc
// recover --policy auto` carries it out, and writes through NBD restore byte for byte afterwards. A proxy cut from
// the archive while it holds the wdiffs is a slow archive, not a gap. Cases that share a layout run on one group, one
// after the other: [s0] [p0] [a0] for those with one archive, [s0] [p0, p1] [a0, a1] for a proxy held unavailable
// and for the secondary archives.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { P, type RawClient } from '../nbd-client';
import { Group } from '../group-fixture';
import { Relay } from '../relay';
import { waitUntil } from '../waiting';

interface Outcome {
  code: number;
  /** `VOLUME SERVER KIND` per finding. */
  findings: string[];
  /** `VOLUME SERVER COMMAND` per step. */
  plan: string[];
  done: string[];
  left: string[];
  failed: string[];
}

type Line = { volume: string; server: string; command: string };
const lines = (l: Line[] = []) => l.map((s) => `${s.volume} ${s.server} ${s.command}`);

/** walbc recover ARGS --json, its exit code and what it printed. */
async function recover(g: Group, ...args: string[]): Promise<Outcome> {
  const r = await g.walbc('recover', ...args, '--json');
  const j = JSON.parse(r.stdout) as {
    findings: { volume: string; server: string; kind: string }[];
    plan: Line[];
    done?: Line[];
    left?: Line[];
    failed?: (Line & { error: string })[];
  };
  return {
    code: r.code,
    findings: j.findings.map((f) => `${f.volume} ${f.server} ${f.kind}`),
    plan: lines(j.plan),
    done: lines(j.done),
    left: lines(j.left),
    failed: (j.failed ?? []).map((f) => `${f.volume} ${f.server} ${f.command}: ${f.error}`),
  };
}

/** The dry run prints `plan` for `findings` and exits 1 (there is something to do); auto carries all of it out. */
async function planAndRun(t: ExecutionContext, g: Group, findings: string[], plan: string[]): Promise<void> {
  const dry = await recover(g, '--dry-run');
  t.deepEqual(dry.findings, findings);
  t.deepEqual(dry.plan, plan);
  t.is(dry.code, 1, 'the dry run exits 1 while there is something to do');
  const auto = await recover(g, '--policy', 'auto');
  t.deepEqual(auto.failed, []);
  t.deepEqual(auto.done, plan, 'auto carried out the plan in order');
  t.is(auto.code, 0);
}

/** Nothing left to do: the dry run finds every volume healthy and exits 0. */
async function healthy(t: ExecutionContext, g: Group): Promise<void> {
  const r = await recover(g, '--dry-run');
  t.deepEqual(r.findings, ['vol - healthy']);
  t.deepEqual(r.plan, []);
  t.is(r.code, 0);
}

/** init-vol, writes, a full backup, more writes, a snapshot: what that snapshot restores to. */
async function backedUp(t: ExecutionContext, g: Group, c: RawClient): Promise<Map<number, string>> {
  await g.ok('init-vol', 'vol', 'w0');
  await g.writeRandom(c, 40);
  await g.ok('full-backup', 'vol', '--wait');
  await g.writeRandom(c, 40);
  const snap = Number(await g.ok('snapshot', 'vol', '--wait'));
  const held = await g.restoredHashes('vol', [snap]);
  t.is(held.get(snap), await g.deviceHash(c));
  return held;
}

/** After writes, a new snapshot restores to the device on `archive`; the older ones in `held` to what they held. */
async function backupGoesOn(
  t: ExecutionContext,
  g: Group,
  c: RawClient,
  held: Map<number, string>,
  archive = 'a0',
): Promise<number> {
  await g.writeRandom(c, 20);
  const gid = Number(await g.ok('snapshot', 'vol', '--wait'));
  t.is(await g.restoredHash('vol', gid, archive), await g.deviceHash(c), `gid ${gid} restores to the device`);
  t.deepEqual(
    await g.restoredHashes('vol', [...held.keys()], archive),
    held,
    'older snapshots restore as before',
  );
  return gid;
}

/** 12 MiB of writes into a 4 MiB log: it overflows; writes never fail. */
async function writePastTheLog(t: ExecutionContext, c: RawClient): Promise<void> {
  for (let i = 0; i < 12; i++)
    t.is(await c.writeAt(i + 1, (i % 6) << 20, crypto.randomBytes(1 << 20)), 0, 'writes never fail');
  t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
}

const HASH_BACKUP = 'vol s0 walbc hash-backup vol --storage s0 --wait';

test.serial(
  "recover with one archive: the archive down, a send error, an overflowed log, the storage's and the proxy's metadata lost, a proxy cut from the archive (slow, not a gap), a proxy's wdiffs lost (a gap), the archive's data lost — each planned as the runbook says and carried out",
  async (t) => {
    // A proxy gives up on an archive after one second of rejections (a send error without waiting half an hour).
    const g = await Group.start(t, 'recover-one', {
      ldevBytes: 4 << 20,
      proxyConfig: { retryTimeoutSec: 1 },
    });
    try {
      const { ok } = g;
      const pendingOnP0 = async () => Number((await ok('get', 'p0', 'proxy-diff', 'vol')).split('\t')[1]);
      const c = await g.nbd();
      let held = await backedUp(t, g, c);
      await healthy(t, g);
      const idle = await recover(g, '--policy', 'auto');
      t.is(idle.code, 0, 'auto on a healthy group does nothing and exits 0');
      t.deepEqual(idle.done, []);

      // The archive down: to be started first; auto does nothing and leaves it to an operator.
      await g.archives[0].kill();
      const down = await recover(g, '--policy', 'auto');
      t.deepEqual(down.findings, ['- a0 unreachable', 'vol - healthy']);
      t.deepEqual(down.left, [
        '- a0 operator: start walb-archive on the host of a0 (systemctl start walb-archive), then walbc recover again',
      ]);
      t.deepEqual(down.done, []);
      t.is(down.code, 1, 'something is left for an operator');
      await g.archives[0].start();
      await waitUntil(
        async () => (await recover(g, '--dry-run')).code === 0,
        'recover finds the group healthy',
      );

      // A send error: the archive refused the wdiffs (the volume stopped there) until the proxy gave up.
      await ok('stop', 'vol', 'a0', '--wait');
      await g.writeRandom(c, 20);
      const refused = Number(await ok('snapshot', 'vol'));
      await waitUntil(async () => (await ok('is-wdiff-send-error', 'vol')) === '1', 'p0 gives up on a0');
      await ok('start', 'vol', 'a0');
      await planAndRun(t, g, ['vol p0 send-error'], ['- - walbc kick-all']);
      await waitUntil(
        async () => (await g.restorable('vol')).includes(refused),
        'the refused snapshot arrives',
      );
      t.is(await g.restoredHash('vol', refused), await g.deviceHash(c));
      await healthy(t, g);

      // The log overflowed while the storage was down.
      await g.storages[0].kill();
      await writePastTheLog(t, c);
      await g.storages[0].start();
      await waitUntil(async () => (await ok('get-state', 'vol', 's0')) === 'Stopped', 'storage Stopped');
      await planAndRun(t, g, ['vol s0 overflow'], [HASH_BACKUP]);
      t.is(await ok('is-overflow', 'vol'), '0');
      t.is(await ok('get-state', 'vol', 's0'), 'Target');
      await backupGoesOn(t, g, c, held);
      await healthy(t, g);

      // The storage lost its metadata: without the wdev, init-storage is an operator's; with --wdev, auto does it.
      await g.storages[0].kill();
      fs.rmSync(g.storages[0].dataDir, { recursive: true, force: true });
      await g.storages[0].start();
      await g.writeRandom(c, 20);
      const initStorage = 'vol s0 walbc init-storage vol w0 --storage s0';
      const blind = await recover(g, '--policy', 'auto');
      t.deepEqual(blind.findings, ['vol s0 storage-lost']);
      t.deepEqual(blind.left, [
        'vol s0 operator: walbc init-storage vol WDEV --storage s0 (WDEV: the wdev of vol on s0)',
        HASH_BACKUP,
      ]);
      t.is(blind.code, 1);
      t.is(await ok('get-state', 'vol', 's0'), 'Clear', 'nothing was done');
      const dry = await recover(g, 'vol', '--wdev', 'w0', '--dry-run');
      t.deepEqual(dry.plan, [initStorage, HASH_BACKUP]);
      const auto = await recover(g, 'vol', '--wdev', 'w0', '--policy', 'auto');
      t.deepEqual(auto.done, [initStorage, HASH_BACKUP]);
      t.is(auto.code, 0);
      await backupGoesOn(t, g, c, held);
      await healthy(t, g);

      // The proxy lost its wdiffs and metadata while it held wdiffs for the archive, which was down.
      await g.archives[0].kill();
      await g.writeRandom(c, 20);
      await ok('snapshot', 'vol');
      await waitUntil(async () => (await pendingOnP0()) > 0, 'p0 holds wdiffs for the archive');
      await g.proxies[0].kill();
      fs.rmSync(g.proxies[0].dataDir, { recursive: true, force: true });
      await g.proxies[0].start();
      await g.archives[0].start();
      await waitUntil(async () => {
        const r = JSON.parse(await ok('call', 's0', 'ListProxies')) as { proxies: { available: boolean }[] };
        return r.proxies.every((p) => p.available);
      }, 's0 sees p0 again');
      await planAndRun(
        t,
        g,
        ['vol p0 proxy-lost'],
        ['vol a0 walbc start-synchronizing vol a0', 'vol s0 walbc stop vol s0 --wait', HASH_BACKUP],
      );
      await backupGoesOn(t, g, c, held);
      await healthy(t, g);

      // p0's link to a0 is cut: p0 holds the wdiffs a0 takes next, the storage shipped past a0's gid. Slow, not a
      // gap. Then p0 loses those wdiffs but keeps its registrations: a0 refuses every later wdiff as too new, for
      // good, as the storage already shipped past its gid.
      const toA0 = new Relay({ host: '127.0.0.1', port: g.archives[0].port });
      await toA0.open();
      const registerA0 = async (...address: string[]) => {
        await ok('stop', 'vol', 'p0', '--wait');
        await ok('archive-info', 'update', 'vol', 'a0', '--proxy', 'p0', ...address);
        await ok('start', 'vol', 'p0');
      };
      await registerA0('--address', toA0.address);
      await toA0.cut();
      await g.writeRandom(c, 20);
      await ok('snapshot', 'vol');
      await waitUntil(async () => {
        const st = JSON.parse(await ok('call', 's0', 'Status', '{"volume":"vol"}')) as { queue: unknown[] };
        return st.queue.length === 0 && (await pendingOnP0()) > 0;
      }, 'the logs shipped to p0, which holds them for the archive');
      await healthy(t, g);
      await g.proxies[0].kill();
      const queue = path.join(g.proxies[0].dataDir, 'vol', 'sendto', 'a0');
      for (const f of fs.readdirSync(queue)) fs.rmSync(path.join(queue, f));
      await g.proxies[0].start();
      await registerA0();
      await g.writeRandom(c, 20);
      const refusedForGood = Number(await ok('snapshot', 'vol'));
      await waitUntil(
        async () => (await pendingOnP0()) > 0,
        'p0 holds the new wdiff, which a0 refuses as too new',
      );
      await waitUntil(async () => {
        const r = JSON.parse(await ok('call', 's0', 'ListProxies')) as { proxies: { available: boolean }[] };
        return r.proxies.every((p) => p.available);
      }, 's0 sees p0 again');
      t.false(
        (await g.restorable('vol')).includes(refusedForGood),
        'the snapshot after the gap is not restorable',
      );
      await planAndRun(t, g, ['vol p0 proxy-gap'], ['vol s0 walbc stop vol s0 --wait', HASH_BACKUP]);
      await backupGoesOn(t, g, c, held);
      await healthy(t, g);

      // The archive lost its data: its history starts again with a full backup.
      await g.archives[0].kill();
      fs.rmSync(g.archives[0].dataDir, { recursive: true, force: true });
      await g.archives[0].start();
      await g.writeRandom(c, 20);
      await planAndRun(
        t,
        g,
        ['vol a0 primary-lost'],
        [
          `vol a0 walbc call a0 InitVol '{"volume":"vol"}'`,
          'vol s0 walbc stop vol s0 --wait',
          'vol s0 walbc reset-vol vol s0',
          'vol s0 walbc full-backup vol --storage s0 --wait',
          '- - walbc kick-all',
        ],
      );
      const [full] = await g.restorable('vol');
      held = await g.restoredHashes('vol', [full]);
      t.is(held.get(full), await g.deviceHash(c), 'the full backup restores to the device');
      await backupGoesOn(t, g, c, held);
      await healthy(t, g);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'recover with two proxies and two archives: a proxy back but held unavailable, a synchronizing secondary that lost its data, a proxy that lost the wdiffs of the secondary (a gap), the primary that lost its data while the secondary synchronizes',
  async (t) => {
    // The storage checks an unavailable proxy again only when kicked.
    const g = await Group.start(t, 'recover-two', {
      proxies: 2,
      archives: 2,
      storageConfig: { proxyHeartbeatSec: 3600 },
    });
    try {
      const { ok } = g;
      const c = await g.nbd();
      const held = await backedUp(t, g, c);
      const synced = Math.floor(Date.now() / 1000); // ListProxies gives lastCheck in seconds
      await ok('replicate', 'vol', 'a0', 'a1', '--sync');
      await healthy(t, g);
      // replicate --sync kicked the storage, which then checks each proxy in turn: until it has, a kill of p0
      // leaves that kick's retries pending, and they would bring p0 back below without the kick the plan names.
      await waitUntil(async () => {
        const r = JSON.parse(await ok('call', 's0', 'ListProxies')) as {
          proxies: { lastCheck: number | string }[];
        };
        return r.proxies.every((p) => Number(p.lastCheck) >= synced);
      }, 's0 checked both proxies after the kick of replicate --sync');

      // p0 down: the logs go through p1; once p0 is back the storage holds it unavailable until a kick.
      await g.proxies[0].kill();
      t.deepEqual((await recover(g, '--dry-run')).findings, ['- p0 unreachable', 'vol - healthy']);
      await backupGoesOn(t, g, c, new Map());
      await g.proxies[0].start();
      await planAndRun(t, g, ['- s0 proxy-unavailable', 'vol - healthy'], ['- - walbc kick-all']);
      // The kick makes the storage try p0 again; it marks it available once p0 answers.
      await waitUntil(async () => {
        const proxies = JSON.parse(await ok('call', 's0', 'ListProxies')) as {
          proxies: { available: boolean }[];
        };
        return proxies.proxies[0].available;
      }, 'p0 is available again after the kick');

      // The synchronizing a1 lost its data: the proxies give up on it; replicated and synchronizing again.
      await g.archives[1].kill();
      fs.rmSync(g.archives[1].dataDir, { recursive: true, force: true });
      await g.archives[1].start();
      await g.writeRandom(c, 20);
      await ok('snapshot', 'vol', '--wait');
      await waitUntil(
        async () => (await ok('is-wdiff-send-error', 'vol', '--archive', 'a1')) === '1',
        'p0 gives up on a1',
      );
      await planAndRun(
        t,
        g,
        ['vol a1 secondary-lost'],
        ['vol a1 walbc replicate vol a0 a1 --sync', '- - walbc kick-all'],
      );
      const next = await backupGoesOn(t, g, c, new Map());
      await waitUntil(async () => (await g.restorable('vol', 'a1')).includes(next), `gid ${next} on a1`);
      const onA1 = new Map([...held, [next, await g.deviceHash(c)]]);
      t.deepEqual(await g.restoredHashes('vol', [...onA1.keys()], 'a1'), onA1, 'a1 restores as a0 does');
      await healthy(t, g);

      // p0 loses the wdiffs it held for a1 while a1 was down, and keeps its registrations: a1 refuses every later
      // wdiff as too new, for good; replicated level and synchronizing again.
      const pendingForA1 = async () =>
        Number(
          (await ok('get', 'p0', 'proxy-diff', 'vol'))
            .split('\n')
            .find((l) => l.startsWith('a1\t'))!
            .split('\t')[1],
        );
      await g.archives[1].kill();
      await g.writeRandom(c, 20);
      await ok('snapshot', 'vol', '--wait');
      await waitUntil(async () => (await pendingForA1()) > 0, 'p0 holds a wdiff for the down a1');
      await g.proxies[0].kill();
      const queueOfA1 = path.join(g.proxies[0].dataDir, 'vol', 'sendto', 'a1');
      for (const f of fs.readdirSync(queueOfA1)) fs.rmSync(path.join(queueOfA1, f));
      await g.proxies[0].start();
      await g.archives[1].start();
      await g.writeRandom(c, 20);
      const refusedOnA1 = Number(await ok('snapshot', 'vol', '--wait'));
      await waitUntil(
        async () => (await pendingForA1()) > 0,
        'p0 holds the new wdiff, which a1 refuses as too new',
      );
      t.false((await g.restorable('vol', 'a1')).includes(refusedOnA1), 'a1 is stuck before the lost wdiff');
      await planAndRun(
        t,
        g,
        ['vol p0 proxy-gap'],
        ['vol a1 walbc replicate vol a0 a1 --sync', '- - walbc kick-all'],
      );
      const after = await backupGoesOn(t, g, c, new Map());
      await waitUntil(async () => (await g.restorable('vol', 'a1')).includes(after), `gid ${after} on a1`);
      t.is(
        await g.restoredHash('vol', after, 'a1'),
        await g.deviceHash(c),
        'a1 restores the newest as a0 does',
      );
      await healthy(t, g);

      // The primary a0 lost its data while a1 synchronizes: auto stops its synchronizing, the restart onto a1 and
      // the layout are the operator's.
      await g.archives[0].kill();
      fs.rmSync(g.archives[0].dataDir, { recursive: true, force: true });
      await g.archives[0].start();
      const auto = await recover(g, '--policy', 'auto');
      t.deepEqual(auto.findings, ['vol a0 primary-lost']);
      t.deepEqual(auto.done, ['vol a0 walbc stop-synchronizing vol a0']);
      t.is(auto.left.length, 1);
      t.regex(auto.left[0], /^vol - operator: restart every storage with a1 as its archive/);
      t.is(auto.code, 1, 'the restart is left for an operator');
      await g.restartStorage(0, g.proxies, g.archives[1]);
      g.writeLayout(1);
      await healthy(t, g);
      await backupGoesOn(t, g, c, onA1, 'a1');
    } finally {
      await g.cleanup();
    }
  },
);
