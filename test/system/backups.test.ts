// The backups list and verification through walbc on a running group [s0] [p0] [a0] (docs/servers.md §6.9):
// `backups` lists every restorable snapshot with its kind and the wdiffs its restore reads; `verify` reads a
// snapshot virtually and prints the hash `walb-tool hash` gives the device at that snapshot and the restored image;
// `restore --test` does the same and writes no image; a flipped byte in a wdiff fails verify with CORRUPTION naming
// the file, and `backups` shows the failure. Against WalB's own virt-full-cat when its tools are there.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseDiffFileName } from '../../src/common/meta';
import type { StoredDiffRecord } from '../../src/native';
import { allRecords } from '../addon-readers';
import { Group } from '../group-fixture';
import type { RawClient } from '../nbd-client';
import { runTool } from '../processes';
import { oracle, oracleTest } from '../walb-oracle';

interface Row {
  gid: number;
  time: string;
  explicit: boolean;
  diffs: number;
  diffBytes: number;
  verification?: { ok: boolean; time: string; hash?: string; errorCode?: string; error?: string };
}

/** The hash `walb-tool hash FILE` prints (its first field). */
async function toolHash(t: ExecutionContext, file: string): Promise<string> {
  const r = await runTool(['hash', file]);
  t.is(r.code, 0, r.stderr);
  return r.stdout.slice(0, 32);
}

/** The device read whole through NBD into a file, hashed by walb-tool hash. */
async function deviceToolHash(t: ExecutionContext, g: Group, c: RawClient): Promise<string> {
  const file = path.join(g.dir, 'device-copy.img');
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0, handle = 5000; off < g.size; off += 1 << 20, handle++) {
      const r = await c.readAt(handle, off, Math.min(1 << 20, g.size - off));
      if (r.error) throw new Error(`read at ${off}: NBD error ${r.error}`);
      fs.writeSync(fd, r.data, 0, r.data.length, off);
    }
  } finally {
    fs.closeSync(fd);
  }
  const hash = await toolHash(t, file);
  fs.rmSync(file);
  return hash;
}

/** The archive's wdiffs of the volume, oldest first, with their metadata from their names. */
function archiveDiffs(g: Group, volume: string) {
  const dir = path.join(g.archives[0].dataDir, volume);
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.wdiff'))
    .map((n) => ({ file: path.join(dir, n), d: parseDiffFileName(n, fs.statSync(path.join(dir, n)).size)! }))
    .sort((a, b) => a.d.snapB.gidB - b.d.snapB.gidB);
}

/** A group with a full backup and three explicit snapshots after writes, each with the device's hash then. */
async function groupWithSnapshots(t: ExecutionContext, name: string) {
  const g = await Group.start(t, name);
  await g.ok('init-vol', 'vol', 'w0');
  const c = await g.nbd();
  await g.writeRandom(c, 40);
  await g.ok('full-backup', 'vol', '--wait');
  const deviceAt = new Map<number, string>();
  for (let i = 0; i < 3; i++) {
    await g.writeRandom(c, 30);
    const gid = Number(await g.ok('snapshot', 'vol', '--wait'));
    deviceAt.set(gid, await deviceToolHash(t, g, c));
  }
  return { g, deviceAt, snapshots: [...deviceAt.keys()] };
}

const verifyHash = async (g: Group, gid: number) => (await g.ok('verify', 'vol', String(gid))).slice(0, 32);

test.serial(
  'backups lists each restorable snapshot with its kind and the wdiffs it needs; verify prints the hash of the device at the snapshot; a flipped wdiff byte fails it',
  async (t) => {
    const { g, deviceAt, snapshots } = await groupWithSnapshots(t, 'backups');
    try {
      const backups = async () => JSON.parse(await g.ok('backups', 'vol', '--json')) as Row[];

      // The list: the snapshots get-restorable --all names, explicit as it says, each needing the chain up to it.
      const rows = await backups();
      const restorable = JSON.parse(await g.ok('get-restorable', 'vol', '--all', '--json')) as {
        gid: number;
        explicit: boolean;
      }[];
      t.deepEqual(
        rows.map((r) => [r.gid, r.explicit]),
        restorable.map((r) => [Number(r.gid), r.explicit]),
      );
      for (const gid of snapshots)
        t.true(rows.find((r) => r.gid === gid)?.explicit, `gid ${gid} is explicit`);
      const diffs = archiveDiffs(g, 'vol');
      for (const r of rows) {
        const needed = diffs.filter((x) => x.d.snapE.gidB <= r.gid);
        t.is(r.diffs, needed.length, `gid ${r.gid}: wdiffs`);
        t.is(
          r.diffBytes,
          needed.reduce((a, x) => a + x.d.dataSize, 0),
          `gid ${r.gid}: bytes`,
        );
        t.is(r.verification, undefined, 'nothing verified yet');
      }
      const text = (await g.ok('backups', 'vol')).split('\n');
      t.is(text[0], 'GID\tTIME\tKIND\tDIFFS\tDIFF-BYTES\tVERIFIED');
      t.is(text.length, rows.length + 1);
      t.regex(text[1], /^\d+\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\t(explicit|implicit)\t\d+\t\d+\tnever$/);

      // verify: the hash of the device at each snapshot, and of the restored image.
      const last = snapshots[snapshots.length - 1];
      for (const gid of snapshots) {
        const line = await g.ok('verify', 'vol', String(gid));
        t.is(line, `${deviceAt.get(gid)}  vol gid ${gid}`, `gid ${gid}`);
      }
      t.not(deviceAt.get(snapshots[0])!, deviceAt.get(last)!, 'the snapshots differ');
      const restored = JSON.parse(await g.ok('restore', 'vol', String(last), '--wait', '--json')) as {
        result: string;
      };
      t.is(await toolHash(t, restored.result), deviceAt.get(last)!, 'the restored image hashes the same');
      await g.ok('del-restored', 'vol', String(last));
      const listed = await backups();
      for (const gid of snapshots) {
        const v = listed.find((r) => r.gid === gid)!.verification;
        t.like(v, { ok: true, hash: deviceAt.get(gid)! }, `gid ${gid} shows its verification`);
        t.true(Date.now() - Date.parse(v!.time) < 10 * 60_000);
      }
      t.regex(
        (await g.ok('backups', 'vol')).split('\n').find((l) => l.startsWith(`${last}\t`))!,
        /\tok \S+ [0-9a-f]{32}$/,
      );

      // restore --test: the same dry run, nothing restored.
      const restoredDir = path.join(g.archives[0].dataDir, 'vol', 'restored');
      t.is(await g.ok('restore', 'vol', String(last), '--test'), `${deviceAt.get(last)}  vol gid ${last}`);
      t.deepEqual(fs.readdirSync(restoredDir), [], 'no image, not even a temporary one');
      t.is(await g.ok('get-restored', 'vol'), '');

      // A flipped byte in the stored data of a wdiff after the first snapshot: verify of the last snapshot fails
      // naming it, the first snapshot (which does not read it) still verifies.
      const between = diffs.filter((x) => x.d.snapB.gidB >= snapshots[0] && x.d.snapE.gidB <= last);
      let newest = '';
      let record: StoredDiffRecord | undefined;
      for (const x of between.reverse()) {
        record = (await allRecords(x.file)).find((r) => r.kind === 'normal' && r.dataSize > 0);
        newest = x.file;
        if (record) break;
      }
      if (!record) throw new Error(`no wdiff after gid ${snapshots[0]} holds data`);
      const at = record.dataOffset + (record.dataSize >> 1);
      const fd = fs.openSync(newest, 'r+');
      const byte = Buffer.alloc(1);
      fs.readSync(fd, byte, 0, 1, at);
      fs.writeSync(fd, Buffer.from([byte[0] ^ 0x40]), 0, 1, at);
      fs.closeSync(fd);
      for (const argv of [
        ['verify', 'vol', String(last)],
        ['restore', 'vol', String(last), '--test'],
      ]) {
        const failed = await g.walbc(...argv);
        t.is(failed.code, 1, argv.join(' '));
        t.regex(failed.stderr, /\[CORRUPTION\]/);
        t.true(failed.stderr.includes(path.basename(newest)), `names the wdiff: ${failed.stderr}`);
      }
      t.deepEqual(fs.readdirSync(restoredDir), []);
      const broken = (await backups()).find((r) => r.gid === last)!.verification!;
      t.like(broken, { ok: false, errorCode: 'CORRUPTION' });
      t.true(broken.error!.includes(path.basename(newest)));
      t.regex(
        (await g.ok('backups', 'vol')).split('\n').find((l) => l.startsWith(`${last}\t`))!,
        /\tFAILED \S+ CORRUPTION: .*\.wdiff/,
      );
      t.is(
        await verifyHash(g, snapshots[0]),
        deviceAt.get(snapshots[0])!,
        'an earlier snapshot does not read it',
      );
    } finally {
      await g.cleanup();
    }
  },
);

oracleTest(
  "verify's hash equals walb-tool hash of what WalB's virt-full-cat reads from the archive's base image and wdiffs",
  { loopDevices: false },
  async (t) => {
    const { g, deviceAt, snapshots } = await groupWithSnapshots(t, 'backups-oracle');
    try {
      const last = snapshots[snapshots.length - 1];
      const dir = path.join(g.archives[0].dataDir, 'vol');
      const chain = archiveDiffs(g, 'vol').filter((x) => x.d.snapE.gidB <= last);
      const image = path.join(g.dir, 'walb-virt-full.img');
      await oracle(t, 'virt-full-cat', [
        '-i',
        path.join(dir, 'base.img'),
        '-d',
        ...chain.map((x) => x.file),
        '-o',
        image,
      ]);
      const walbHash = await toolHash(t, image);
      t.is(walbHash, deviceAt.get(last)!, "WalB's reading is the device at the snapshot");
      t.is(await verifyHash(g, last), walbHash);
    } finally {
      await g.cleanup();
    }
  },
);
