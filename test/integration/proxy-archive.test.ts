// walb-proxy between a storage (played by the test, streaming wlogs) and a real walb-archive: wlogs become wdiffs,
// consecutive mergeable ones travel as one, the archive restores every snapshot byte for byte, a proxy killed
// after acknowledging a wlog still delivers it after its restart, and the proxy keeps no wdiff open once sent.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { runTransfer } from '../../src/common/transfer';
import { native } from '../../src/native';
import { openFiles } from '../processes';
import { makeTempDir, removeDir } from '../temp-files';
import { ServerProc, archiveClient, freePort, operationsClient, proxyClient } from '../system-harness';
import { waitUntil } from '../waiting';

const SIZE = 16 << 20;
const UUID = 'ab'.repeat(16);

test('wlogs through the proxy reach the archive as wdiffs; mergeable ones are merged; a killed proxy still delivers', async (t) => {
  const dir = makeTempDir('proxy-archive');
  const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
  const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
  try {
    // Ground truth: base image and four wlogs in a row.
    const img = crypto.randomBytes(SIZE);
    const truth = [path.join(dir, 't0.img')];
    fs.writeFileSync(truth[0], img);
    const wlogs: { file: string; salt: number; begin: number; end: number }[] = [];
    let lsid = 0;
    for (let i = 1; i <= 4; i++) {
      const file = path.join(dir, `${i}.wlog`);
      const g = await native.wlogGen(file, {
        deviceSize: SIZE / 512,
        amount: 2 << 20,
        lsid,
        seed: 10 + i,
        discardRatio: 0.05,
      });
      wlogs.push({ file, salt: g.salt, begin: g.beginLsid, end: g.endLsid });
      lsid = g.endLsid;
      truth.push(path.join(dir, `t${i}.img`));
      fs.copyFileSync(truth[i - 1], truth[i]);
      await native.wlogRedo(file, truth[i], { discard: 'zero' });
    }

    await archive.start();
    await proxy.start();
    const a = archiveClient(archive.address);
    const p = proxyClient(proxy.address);
    await a.InitVol({ volume: 'vol0' });
    const bulks: { data: { offset: number; data: Buffer } }[] = [];
    for (let off = 0; off < SIZE; off += 1 << 20)
      bulks.push({ data: { offset: off, data: img.subarray(off, off + (1 << 20)) } });
    const full = await runTransfer(
      a.FullSync(),
      { header: { volume: 'vol0', size: SIZE / 512, storageUuid: UUID, timestamp: 1_700_000_000 } },
      async function* () {
        yield* bulks;
      },
      { end: { snapshot: { gidB: 0, gidE: 0 } } },
    );
    t.true(full.ok);

    // A send delay longer than the test: the proxy sends only when kicked or restarted, so that what it merges does
    // not depend on how fast a loaded machine hands it the wlogs.
    await p.ArchiveInfoAdd({ volume: 'vol0', name: 'a0', address: archive.address, delaySec: 3600 });
    await t.throwsAsync(p.ArchiveInfoAdd({ volume: 'vol0', name: 'a0', address: archive.address }), {
      message: /registered/,
    });
    const notStarted = await sendWlog(p, wlogs[0], 0, 1, false);
    t.false(notStarted.ok);
    await p.Start({ volume: 'vol0' });

    // Three wlogs within the archive's send delay: 0-1, 1-2 (mergeable), 2-3 (mergeable), then a kick: they go as
    // one 0-3.
    t.true((await sendWlog(p, wlogs[0], 0, 1, false)).ok);
    t.true((await sendWlog(p, wlogs[1], 1, 2, true)).ok);
    t.true((await sendWlog(p, wlogs[2], 2, 3, true)).ok);
    await p.Kick({ volume: 'vol0', archive: 'a0' });
    const restorable = async () =>
      (await a.GetRestorable({ volume: 'vol0', all: true })).snapshots.map((s) => Number(s.gid));
    await waitUntil(async () => (await restorable()).includes(3), 'gid 3 restorable');
    t.deepEqual(await restorable(), [0, 3], 'the three diffs arrived merged');
    t.is((await a.Status({ volume: 'vol0' })).diffs, 1);
    t.false((await p.IsWdiffSendError({ volume: 'vol0', name: 'a0' })).value);

    // The proxy acknowledges 3-4, then dies before its send delay is over; after a restart it delivers it.
    t.true((await sendWlog(p, wlogs[3], 3, 4, false)).ok);
    await proxy.kill();
    p.close();
    await proxy.start();
    await waitUntil(
      async () => (await restorable()).includes(4),
      'gid 4 restorable after the proxy restart',
    ).catch((e) => {
      t.log(proxy.stderr.slice(-3000));
      throw e;
    });

    const ops = operationsClient(archive.address);
    for (const gid of [3, 4]) {
      const op = await a.Restore({ volume: 'vol0', gid });
      let last = op;
      await waitUntil(async () => (last = await ops.Get({ id: op.id })).state !== 'running', 'restore');
      t.is(last.state, 'done', last.error);
      t.true(
        fs.readFileSync(last.result).equals(fs.readFileSync(truth[gid])),
        `gid ${gid} restores byte for byte`,
      );
    }
    a.close();
    ops.close();
  } finally {
    await proxy.kill();
    await archive.kill();
    removeDir(dir);
  }
});

test('the proxy holds no wdiff file open once it has sent it, over many small sends', async (t) => {
  const dir = makeTempDir('proxy-fds');
  const archive = new ServerProc('walb-archive', path.join(dir, 'archive'), await freePort());
  const proxy = new ServerProc('walb-proxy', path.join(dir, 'proxy'), await freePort());
  const size = 4 << 20;
  try {
    const wlogs: { file: string; salt: number; begin: number; end: number }[] = [];
    let lsid = 0;
    for (let i = 1; i <= 40; i++) {
      const file = path.join(dir, `${i}.wlog`);
      const g = await native.wlogGen(file, { deviceSize: size / 512, amount: 64 << 10, lsid, seed: i });
      wlogs.push({ file, salt: g.salt, begin: g.beginLsid, end: g.endLsid });
      lsid = g.endLsid;
    }
    await archive.start();
    await proxy.start();
    const a = archiveClient(archive.address);
    const p = proxyClient(proxy.address);
    await a.InitVol({ volume: 'vol0' });
    const full = await runTransfer(
      a.FullSync(),
      { header: { volume: 'vol0', size: size / 512, storageUuid: UUID, timestamp: 1_700_000_000 } },
      async function* () {
        yield { data: { offset: 0, data: Buffer.alloc(1 << 20, 1) } };
      },
      { end: { snapshot: { gidB: 0, gidE: 0 } } },
    );
    t.true(full.ok);
    await p.ArchiveInfoAdd({ volume: 'vol0', name: 'a0', address: archive.address, delaySec: 0 });
    await p.Start({ volume: 'vol0' });

    // Sample the proxy's descriptors all along: a wdiff it sent is deleted, so a descriptor still on it shows
    // as "x.wdiff (deleted)".
    const pid = proxy.proc!.pid!;
    const wdiffFds = () => openFiles(pid).filter((f) => /\.wdiff( \(deleted\))?$/.test(f));
    let samples = 0;
    let most = 0;
    const onSent: string[] = [];
    const sampler = setInterval(() => {
      const open = wdiffFds();
      samples++;
      most = Math.max(most, open.length);
      onSent.push(...open.filter((f) => f.endsWith(' (deleted)')));
    }, 5);
    try {
      // The first half one by one, the second half mergeable (sent merged, several files per send).
      for (let i = 0; i < wlogs.length; i++) {
        t.true((await sendWlog(p, wlogs[i], i, i + 1, i >= wlogs.length / 2, size)).ok);
      }
      const pending = async () => (await p.Status({ volume: 'vol0' })).archives[0].pendingWdiffs;
      await waitUntil(async () => (await pending()) === 0, 'every wdiff sent');
    } finally {
      clearInterval(sampler);
    }
    const restorable = (await a.GetRestorable({ volume: 'vol0', all: true })).snapshots.map((s) =>
      Number(s.gid),
    );
    t.true(restorable.includes(wlogs.length), `gid ${wlogs.length} restorable: ${restorable.join(' ')}`);
    t.log(`${samples} samples of the proxy's descriptors; at most ${most} on wdiffs at once`);
    t.true(samples > 10, 'the sampler saw the sends');
    t.deepEqual([...new Set(onSent)], [], 'no descriptor on a wdiff already sent');
    t.deepEqual(wdiffFds(), [], 'no descriptor on any wdiff once all are sent');
    a.close();
    p.close();
  } finally {
    await proxy.kill();
    await archive.kill();
    removeDir(dir);
  }
});

async function sendWlog(
  p: ReturnType<typeof proxyClient>,
  w: { file: string; salt: number; begin: number; end: number },
  gidB: number,
  gidE: number,
  mergeable: boolean,
  size = SIZE,
) {
  const body = fs.readFileSync(w.file).subarray(4096);
  const client = p;
  return runTransfer(
    client.SendWlog(),
    {
      header: {
        volume: 'vol0',
        storageUuid: UUID,
        pbs: 512,
        salt: w.salt,
        size: size / 512,
        beginLsid: w.begin,
        maxLogPb: w.end - w.begin,
      },
    },
    async function* () {
      for (let off = 0; off < body.length; off += 1 << 20)
        yield { packs: body.subarray(off, off + (1 << 20)) };
    },
    {
      end: {
        endLsid: w.end,
        diff: {
          snapB: { gidB, gidE: gidB },
          snapE: { gidB: gidE, gidE },
          mergeable,
          timestamp: 1_700_000_000 + gidE,
        },
      },
    },
  );
}
