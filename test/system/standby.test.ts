// Standby storage volumes (docs/servers.md §4.2) through walbc on [s0] [p0] [a0] with a log much smaller than what
// is written: a Standby volume frees its log as it comes and never overflows, also after a SIGKILL of the storage;
// snapshots are refused; start standby resets an overflowed log; stop returns it to SyncReady, from where a full
// backup works; go-standby of a Target under writes ends Standby and ships nothing more.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { ServerProc, freePort, storageClient, walbcOn } from '../system-harness';
import { waitUntil } from '../waiting';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 16 << 20;
const LOG = 4 << 20;

interface Group {
  s0: ServerProc;
  c: RawClient;
  walbc: ReturnType<typeof walbcOn>;
  /** The wdev's log use as a fraction of its capacity. */
  logUse(): Promise<number>;
  /** `total` bytes of 256 KiB random writes in pieces of a quarter of the log, each flushed and, unless told
   * otherwise, drained below 30% of the log before the next. */
  write(total: number, drained?: boolean): Promise<void>;
}

/** [s0] [p0] [a0] on loopback with volume `vol` on wdev `w` whose log is LOG, SyncReady after walbc init-vol. */
async function withGroup(
  t: ExecutionContext,
  name: string,
  body: (g: Group) => Promise<void>,
): Promise<void> {
  const dir = makeTempDir(name);
  const wdevd = new Wdevd(path.join(dir, 'wdevd'));
  const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort());
  const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort());
  const s0 = new ServerProc('walb-storage', path.join(dir, 's0'), await freePort(), [
    '--archive',
    a0.address,
    '--proxy',
    p0.address,
    '--wdevd-socket',
    path.join(wdevd.runDir, 'wdevd.sock'),
  ]);
  let c: RawClient | undefined;
  try {
    await wdevd.start();
    const files = await makeWdevFiles(dir, 'w', { ldevBytes: LOG, ddevBytes: SIZE, pbs: 4096 });
    await wdevd.client.createWdev({ ...files, name: 'w' });
    await Promise.all([a0.start(), p0.start()]);
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
    const walbc = walbcOn(t, layout);
    await walbc.ok('init-vol', 'vol', 'w');
    const nbd = (await RawClient.go(wdevd.nbdSocket, 'w')).c;
    c = nbd;
    let handle = 1;
    const logUse = async () => {
      const st = await wdevd.client.status('w');
      return st.logUsage / st.logCapacity;
    };
    const write = async (total: number, drained = true) => {
      for (let done = 0; done < total; done += LOG / 4) {
        for (let k = 0; k < LOG / 4; k += 256 << 10) {
          const off = 4096 * crypto.randomInt((SIZE - (256 << 10)) / 4096);
          t.is(await nbd.writeAt(handle++, off, crypto.randomBytes(256 << 10)), 0, 'writes never fail');
        }
        t.is(await nbd.simple(P.NBD_CMD_FLUSH, handle++, 0, 0), 0);
        if (drained) await waitUntil(async () => (await logUse()) < 0.3, 'the log drains', 60_000);
      }
    };
    await body({ s0, c: nbd, walbc, logUse, write });
  } finally {
    c?.destroy();
    await s0.kill();
    await Promise.all([p0.kill(), a0.kill()]);
    await wdevd.cleanup();
    removeDir(dir);
  }
}

/** SHA-1 of the whole device read through NBD. */
async function deviceHash(c: RawClient): Promise<string> {
  const h = crypto.createHash('sha1');
  for (let off = 0, handle = 100_000; off < SIZE; off += 1 << 20, handle++)
    h.update((await c.readAt(handle, off, 1 << 20)).data);
  return h.digest('hex');
}

const fileHash = (f: string) => crypto.createHash('sha1').update(fs.readFileSync(f)).digest('hex');

test.serial(
  'a Standby volume frees its log as it comes (WlogRemove): eight logs worth of writes never overflow and the log empties, also after a SIGKILL of walb-storage; snapshot is refused; start standby resets an overflowed log',
  (t) =>
    withGroup(t, 'standby-log', async ({ s0, walbc, logUse, write }) => {
      const { ok, run } = walbc;
      t.is(await ok('start', 'vol', 's0', '--mode', 'standby'), 'Standby');
      t.regex(await ok('status', 'vol'), /^s0\tstorage\tvol\tStandby\t/m);

      const snap = await run('snapshot', 'vol');
      t.not(snap.code, 0);
      t.regex(snap.stderr, /FAILED_PRECONDITION/);
      t.regex(snap.stderr, /snapshot: volume vol is Standby, needs Target or Stopped/);

      // While the writes go on, GetState shows the task freeing the log.
      const client = storageClient(s0.address);
      const actions = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        while (watching) for (const a of (await client.GetState({ volume: 'vol' })).actions) actions.add(a);
      })();
      try {
        await write(8 * LOG);
      } finally {
        watching = false;
        await watcher;
        client.close();
      }
      t.deepEqual([...actions], ['WlogRemove'], 'logs are removed, never sent');
      t.is(await ok('is-overflow', 'vol'), '0');
      await waitUntil(async () => (await logUse()) < 0.01, 'the log of a Standby volume empties');
      t.is(
        await ok('get', 's0', 'latest-snap', 'vol'),
        'name:vol\tkind:storage\tgid:0',
        'no snapshot record',
      );

      // A SIGKILL of the storage: the restarted server resumes Standby and frees the log again.
      await s0.kill();
      await s0.start();
      t.is(await ok('get-state', 'vol', 's0'), 'Standby');
      await write(2 * LOG);
      t.is(await ok('is-overflow', 'vol'), '0');
      await waitUntil(async () => (await logUse()) < 0.01, 'the log empties after the restart');

      // With the storage down nothing frees the log: it overflows. The restarted Standby volume stays so; a stop
      // returns it to SyncReady, and start standby resets the log (new uuid) instead of refusing.
      await s0.kill();
      await write(3 * LOG, false);
      await s0.start();
      t.is(await ok('get-state', 'vol', 's0'), 'Standby');
      t.is(await ok('is-overflow', 'vol'), '1');
      const uuid = await ok('get', 's0', 'uuid', 'vol');
      await ok('stop', 'vol', 's0', '--wait');
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      t.is(await ok('start', 'vol', 's0', '--mode', 'standby'), 'Standby');
      t.is(await ok('is-overflow', 'vol'), '0');
      t.not(await ok('get', 's0', 'uuid', 'vol'), uuid, 'reset-wal drew a new log stream');
      t.regex(s0.stderr, /"event":"overflow-reset"/);
      await write(2 * LOG);
      t.is(await ok('is-overflow', 'vol'), '0');
    }),
);

test.serial(
  'stop of a Standby volume returns it to SyncReady and a full backup works; go-standby of a Target under writes ends Standby and ships nothing more',
  (t) =>
    withGroup(t, 'standby-switch', async ({ c, walbc, write }) => {
      const { ok } = walbc;
      t.is(await ok('go-standby', 'vol'), 'SyncReady -> Standby');
      t.is(await ok('go-standby', 'vol'), 'Standby already');
      await write(LOG);
      await ok('stop', 'vol', 's0', '--wait');
      t.is(await ok('get-state', 'vol', 's0'), 'SyncReady');
      const full = JSON.parse(await ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      const restored = JSON.parse(await ok('restore', 'vol', String(full.gid), '--wait', '--json')) as {
        result: string;
      };
      t.is(fileHash(restored.result), await deviceHash(c), 'the full backup restores to the device');
      t.is(await ok('get-state', 'vol', 's0'), 'Target');

      // Writes at about 1.3 MB/s (a third of the log a second) go on through the switch and after it.
      let writing = true;
      const writer = (async () => {
        while (writing) {
          await write(LOG / 4, false);
          await new Promise((r) => setTimeout(r, 800));
        }
      })();
      try {
        await waitUntil(
          async () => Number(await ok('get', 'a0', 'num-diff', 'vol')) > 0,
          'diffs of the writes reach the archive',
        );
        t.is(await ok('go-standby', 'vol'), 'Target -> Standby');
        t.is(await ok('get-state', 'vol', 's0'), 'Standby');
        // What the proxy still held reaches the archive; after that nothing more comes.
        await waitUntil(
          async () => (await ok('get', 'p0', 'proxy-diff', 'vol')) === 'a0\t0\t0',
          'proxy drained',
        );
        const latest = await ok('get', 'a0', 'latest-snap', 'vol');
        const diffs = await ok('get', 'a0', 'num-diff', 'vol');
        await new Promise((r) => setTimeout(r, 4000));
        t.is(await ok('get', 'a0', 'latest-snap', 'vol'), latest, "the archive's latest snapshot stays");
        t.is(await ok('get', 'a0', 'num-diff', 'vol'), diffs);
        t.is(await ok('get', 'p0', 'proxy-diff', 'vol'), 'a0\t0\t0', 'the proxy received nothing more');
        t.is(await ok('get', 's0', 'latest-snap', 'vol'), 'name:vol\tkind:storage\tgid:0');
        t.is(await ok('get-state', 'vol', 's0'), 'Standby');
        t.is(await ok('is-overflow', 'vol'), '0');
      } finally {
        writing = false;
        await writer;
      }
    }),
);
