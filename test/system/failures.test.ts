// docs/servers.md §12 e1 and e2 with the Controller API on [s0] [p0, p1] [a0] and a log much smaller than what is
// written: e1 — the first proxy is killed, more than the log's size is written (the second proxy drains it), no
// overflow, the first comes back; e2 — the archive is killed, more than the log's size is written (the proxies
// hold it), no overflow, the snapshot is not restorable until the archive returns, then it restores to the device.
// And a hung proxy (SIGSTOP) on the same layout.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Controller } from '../../src/controller/controller';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { ServerProc, freePort } from '../system-harness';
import { waitUntil } from '../waiting';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 16 << 20;
const LOG = 4 << 20;

const sha1 = (b: Buffer) => crypto.createHash('sha1').update(b).digest('hex');

interface Group {
  wdevd: Wdevd;
  a0: ServerProc;
  p0: ServerProc;
  p1: ServerProc;
  s0: ServerProc;
  ctl: Controller;
  /** The NBD connection to the volume's wdev. */
  c: RawClient;
  /** The device as the full backup saw it; the test keeps it in step with its writes. */
  image: Buffer;
}

/**
 * [s0] [p0, p1] [a0] on loopback with volume `vol` on a wdev (log of `ldevBytes`), fully backed up; `storage`
 * goes into the storage's config file. Everything is stopped and removed afterwards (a stopped p0 too).
 */
async function withGroup(
  vol: string,
  ldevBytes: number,
  storage: object,
  body: (g: Group) => Promise<void>,
): Promise<void> {
  const dir = makeTempDir(`failures-${vol}`);
  const wdevd = new Wdevd(path.join(dir, 'wdevd'));
  const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort());
  const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort());
  const p1 = new ServerProc('walb-proxy', path.join(dir, 'p1'), await freePort());
  const config = path.join(dir, 'storage.json');
  fs.writeFileSync(config, JSON.stringify(storage));
  const s0 = new ServerProc('walb-storage', path.join(dir, 's0'), await freePort(), [
    '--config',
    config,
    '--archive',
    a0.address,
    '--proxy',
    `${p0.address},${p1.address}`,
    '--wdevd-socket',
    path.join(wdevd.runDir, 'wdevd.sock'),
  ]);
  const ctl = new Controller({
    storages: [{ id: 's0', address: s0.address }],
    proxies: [
      { id: 'p0', address: p0.address },
      { id: 'p1', address: p1.address },
    ],
    archives: [{ id: 'a0', address: a0.address }],
  });
  let c: RawClient | undefined;
  try {
    await wdevd.start();
    const files = await makeWdevFiles(dir, vol, { ldevBytes, ddevBytes: SIZE, pbs: 4096 });
    await wdevd.client.createWdev({ ...files, name: vol });
    await Promise.all([a0.start(), p0.start(), p1.start()]);
    await s0.start();
    await ctl.initVolume(vol, vol);
    await ctl.fullBackup(vol, { wait: true });
    c = (await RawClient.go(wdevd.nbdSocket, vol)).c;
    await body({ wdevd, a0, p0, p1, s0, ctl, c, image: fs.readFileSync(files.ddev) });
  } finally {
    c?.destroy();
    p0.proc?.kill('SIGCONT');
    ctl.close();
    await s0.kill();
    await Promise.all([p0.kill(), p1.kill(), a0.kill()]);
    await wdevd.cleanup();
    removeDir(dir);
  }
}

test.serial(
  'e1/e2: with the first proxy, then the archive, killed, several logs worth of writes go through without overflow; snapshots become restorable once the archive is back and equal the device',
  (t) =>
    withGroup('v', LOG, {}, async ({ wdevd, p0, p1, a0, s0, ctl, c, image }) => {
      let handle = 1;
      const logUse = async () => {
        const st = await wdevd.client.status('v');
        return st.logUsage / st.logCapacity;
      };
      /** `total` bytes of 256 KiB random writes, in pieces of a quarter of the log, each drained below 30%. */
      const writeThrough = async (total: number) => {
        for (let done = 0; done < total; done += LOG / 4) {
          for (let k = 0; k < LOG / 4; k += 256 << 10) {
            const off = 4096 * crypto.randomInt((SIZE - (256 << 10)) / 4096);
            const data = crypto.randomBytes(256 << 10);
            data.copy(image, off);
            t.is(await c.writeAt(handle++, off, data), 0);
          }
          t.is(await c.simple(P.NBD_CMD_FLUSH, handle++, 0, 0), 0);
          await waitUntil(async () => (await logUse()) < 0.3, 'the log drains', 60_000);
        }
      };
      const restoresToDevice = async (gid: number) => {
        const op = await ctl.restore('v', gid, { wait: true });
        t.is(sha1(fs.readFileSync(op.result)), sha1(image), `gid ${gid} restores to the device`);
        await ctl.delRestored('v', gid);
      };

      // e1
      await p0.kill();
      await writeThrough(3 * LOG);
      t.false(await ctl.isOverflow('v'), 'e1: no overflow with the first proxy down');
      t.regex(
        s0.stderr,
        new RegExp(`"event":"wlog-sent".*"proxy":"${p1.address}"`),
        'the second proxy drained it',
      );
      const g1 = await ctl.snapshot('v', { wait: true });
      await p0.start();
      await ctl.kickAll();
      await restoresToDevice(g1);

      // e2
      await a0.kill();
      await writeThrough(3 * LOG);
      t.false(await ctl.isOverflow('v'), 'e2: no overflow with the archive down');
      const g2 = await ctl.snapshot('v');
      // Not restorable while the archive is away: its diffs wait on the proxies.
      type PStatus = { archives: { name: string; pendingWdiffs: number }[] };
      const pending = async () => {
        let n = 0;
        for (const p of ['p0', 'p1'])
          n += ((await ctl.callMethod(p, 'Status', { volume: 'v' })) as PStatus).archives[0].pendingWdiffs;
        return n;
      };
      await waitUntil(async () => (await pending()) > 0, 'the snapshot waits on a proxy', 30_000);
      await new Promise((r) => setTimeout(r, 2000));
      t.true((await pending()) > 0, 'e2: still waiting while the archive is down');
      await a0.start();
      await ctl.kickAll();
      await ctl.waitRestorable('v', g2, 'a0', 60_000);
      await restoresToDevice(g2);
      t.false(await ctl.isOverflow('v'));
    }),
);

test.serial(
  'a hung proxy (SIGSTOP) holds a transfer only for the socket timeout: the logs go through the next proxy and the snapshot restores to the device',
  (t) =>
    withGroup('h', 32 << 20, { socketTimeoutSec: 2 }, async ({ p0, p1, s0, ctl, c, image }) => {
      p0.proc!.kill('SIGSTOP');
      const data = crypto.randomBytes(2 << 20);
      data.copy(image, 4 << 20);
      t.is(await c.writeAt(1, 4 << 20, data, P.NBD_CMD_FLAG_FUA), 0);
      const started = Date.now();
      const gid = await ctl.snapshot('h');
      // waitRestorable kicks every proxy, the hung one only briefly.
      await ctl.waitRestorable('h', gid, 'a0', 60_000);
      t.log(`restorable ${Date.now() - started} ms after the snapshot, with the first proxy hung`);
      t.regex(s0.stderr, /did not answer within 2 s/, 'the transfer to the hung proxy timed out');
      t.regex(s0.stderr, new RegExp(`"event":"wlog-sent".*"proxy":"${p1.address}"`));
      // status asks everyone at once and briefly: the hung proxy shows as UNREACHABLE within seconds.
      const asked = Date.now();
      const rows = await ctl.status('h');
      t.true(
        Date.now() - asked < 30_000,
        `status took ${Date.now() - asked} ms (a hung server must not hold it for the 60 s call timeout)`,
      );
      t.is(rows.find((r) => r.server === 'p0')?.state, 'UNREACHABLE');
      t.is(rows.find((r) => r.server === 's0')?.state, 'Target');
      const op = await ctl.restore('h', gid, { wait: true });
      t.is(sha1(fs.readFileSync(op.result)), sha1(image));
    }),
);
