// Growing a volume through the whole group (scenarios n11a, n11b and m3 of docs/servers.md §12; the flow of
// docs/servers.md §9.1) on the layout [s0] [p0] [a0]: the data device is grown, then `walbc resize` grows the archive and then the storage; writes in the new
// area reach a restore, and a snapshot of before the resize still restores to what it held; a hash backup after
// a resize without zero-clear finds the archive equal to the device. A storage grown without its
// archive makes the proxy give up on SMALLER_SIZE until the archive is grown and the group kicked. Shrinking is
// refused on both, and the archive does not grow while a restore runs.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { P, RawClient } from '../nbd-client';
import { run } from '../processes';
import { ServerProc, archiveClient, freePort, walbcOn } from '../system-harness';
import { makeTempDir, removeDir } from '../temp-files';
import { waitUntil } from '../waiting';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
const GROWTH = 4 * MiB;

interface Group {
  dir: string;
  wdevd: Wdevd;
  ddev: string;
  servers: ServerProc[];
  layout: string;
  archive: ReturnType<typeof archiveClient>;
  /** The device's bytes at `oldGid`, a snapshot restorable before any resize. */
  oldGid: number;
  oldBytes: Buffer;
}

let group: Group | undefined;

/** The whole device as a new NBD connection sees it, and the size that connection was given. */
async function readDevice(g: Group): Promise<{ size: number; bytes: Buffer }> {
  const { c, size } = await RawClient.go(g.wdevd.nbdSocket, 'w0');
  try {
    const parts: Buffer[] = [];
    for (let off = 0, handle = 1; off < size; off += MiB, handle++) {
      const r = await c.readAt(handle, off, MiB);
      if (r.error) throw new Error(`read at ${off}: NBD error ${r.error}`);
      parts.push(r.data);
    }
    return { size, bytes: Buffer.concat(parts) };
  } finally {
    c.destroy();
  }
}

/** Random data written at `offset` through a new NBD connection, flushed. */
async function writeAt(g: Group, offset: number, length: number): Promise<void> {
  const { c } = await RawClient.go(g.wdevd.nbdSocket, 'w0');
  try {
    if ((await c.writeAt(1, offset, crypto.randomBytes(length))) !== 0) throw new Error(`write at ${offset}`);
    if ((await c.simple(P.NBD_CMD_FLUSH, 2, 0, 0)) !== 0) throw new Error('flush failed');
  } finally {
    c.destroy();
  }
}

function restoredImage(out: string): Buffer {
  return fs.readFileSync((JSON.parse(out) as { result: string }).result);
}

test.before(async () => {
  const dir = makeTempDir('resize');
  const wdevd = new Wdevd(path.join(dir, 'wdevd'));
  const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort());
  const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort());
  const g: Group = {
    dir,
    wdevd,
    ddev: '',
    servers: [a0, p0],
    layout: path.join(dir, 'layout.json'),
    archive: archiveClient(a0.address),
    oldGid: 0,
    oldBytes: Buffer.alloc(0),
  };
  group = g;
  await wdevd.start();
  const files = await makeWdevFiles(dir, 'w0', { ldevBytes: 64 * MiB, ddevBytes: SIZE, pbs: 4096 });
  g.ddev = files.ddev;
  await wdevd.client.createWdev({ ...files, name: 'w0' });
  await Promise.all([a0.start(), p0.start()]);
  const s0 = new ServerProc('walb-storage', path.join(dir, 's0'), await freePort(), [
    '--archive',
    a0.address,
    '--proxy',
    p0.address,
    '--wdevd-socket',
    path.join(wdevd.runDir, 'wdevd.sock'),
  ]);
  g.servers.push(s0);
  await s0.start();
  fs.writeFileSync(
    g.layout,
    JSON.stringify({
      storages: [{ id: 's0', address: s0.address }],
      proxies: [{ id: 'p0', address: p0.address }],
      archives: [{ id: 'a0', address: a0.address }],
    }),
  );
});

test.after.always(async () => {
  if (!group) return;
  group.archive.close();
  for (const s of group.servers) await s.kill();
  await group.wdevd.cleanup();
  removeDir(group.dir);
});

test.serial('a full backup and a snapshot before any resize', async (t) => {
  const g = group!;
  const { ok } = walbcOn(t, g.layout);
  await ok('init-vol', 'vol', 'w0');
  await writeAt(g, 0, 2 * MiB);
  await ok('full-backup', 'vol', '--wait');
  await writeAt(g, SIZE - MiB, MiB);
  g.oldGid = Number(await ok('snapshot', 'vol', '--wait'));
  g.oldBytes = (await readDevice(g)).bytes;
  t.is(g.oldBytes.length, SIZE);
});

test.serial(
  'shrinking is refused by the archive and the storage, and a storage larger than its data device says to grow it',
  async (t) => {
    const { run: walbc } = walbcOn(t, group!.layout);
    const smaller = (SIZE - MiB) / 512;
    const viaWalbc = await walbc('resize', 'vol', `${(SIZE - MiB) / MiB}M`);
    t.is(viaWalbc.code, 2, viaWalbc.stderr);
    t.regex(viaWalbc.stderr, /holds \d+ LB, asked \d+ LB: a volume can only grow \[INVALID_ARGUMENT\]/);
    const archive = await walbc('call', 'a0', 'Resize', JSON.stringify({ volume: 'vol', size: smaller }));
    t.regex(archive.stderr, /a volume can only grow \[INVALID_ARGUMENT\]/);
    const storage = await walbc('call', 's0', 'Resize', JSON.stringify({ volume: 'vol', size: smaller }));
    t.regex(storage.stderr, /a volume can only grow \[INVALID_ARGUMENT\]/);
    const beyond = await walbc(
      'call',
      's0',
      'Resize',
      JSON.stringify({ volume: 'vol', size: (SIZE + GROWTH) / 512 }),
    );
    t.regex(beyond.stderr, /grow the data device first \(a file: truncate it larger\) \[INVALID_ARGUMENT\]/);
    const sizes = JSON.parse(await walbcOn(t, group!.layout).ok('call', 'a0', 'Status', '{"volume":"vol"}'));
    t.is(Number((sizes as { size: number }).size), SIZE / 512, 'nothing changed');
  },
);

test.serial('the archive does not grow while a restore runs', async (t) => {
  const g = group!;
  // The restore's temporary image is a FIFO: the restore blocks opening it until the test opens its other end.
  const fifo = path.join(g.dir, 'a0', 'vol', 'restored', `.tmp-${g.oldGid}.img`);
  t.is((await run('mkfifo', [fifo])).code, 0);
  const op = await g.archive.Restore({ volume: 'vol', gid: g.oldGid });
  t.is(op.state, 'running');
  const refused = await g.archive
    .Resize({ volume: 'vol', size: (SIZE + GROWTH) / 512, zeroClear: false })
    .then(() => undefined)
    .catch((err: { code?: string; message: string }) => err);
  t.is(refused?.code, 'FAILED_PRECONDITION');
  t.regex(refused?.message ?? '', /busy \(Restore\)/);
  // Whatever the restore does with it now, it ends (and deletes its temporary file).
  const drain = fs.createReadStream(fifo).resume();
  try {
    await waitUntil(
      async () => !(await g.archive.GetState({ volume: 'vol' })).actions.includes('Restore'),
      () => 'the blocked restore to end',
    );
  } finally {
    drain.destroy();
  }
  t.is((await g.archive.Status({ volume: 'vol' })).size, SIZE / 512, 'not grown');
});

test.serial(
  'n11a: data device +4 MiB, walbc resize --zero-clear, writes in the new area restore equal to the device; the older snapshot restores as it was',
  async (t) => {
    const g = group!;
    const { ok } = walbcOn(t, g.layout);
    const grown = SIZE + GROWTH;
    fs.truncateSync(g.ddev, grown);
    const said = await ok('resize', 'vol', `${grown / MiB}M`, '--zero-clear');
    t.is(said, `a0: vol is ${grown / 512} LB\ns0: vol is ${grown / 512} LB`);

    // A new NBD connection is given the new size, by a real client too.
    const info = await run('nbdinfo', ['--size', g.wdevd.uri('w0')]);
    t.is(info.stdout.trim(), String(grown), info.stderr);
    await writeAt(g, SIZE + MiB, 2 * MiB);
    await writeAt(g, SIZE - 64 * 1024, 128 * 1024);
    const gid = Number(await ok('snapshot', 'vol', '--wait'));
    const device = await readDevice(g);
    t.is(device.size, grown);
    const image = restoredImage(await ok('restore', 'vol', String(gid), '--wait', '--json'));
    t.is(image.length, grown);
    t.true(image.equals(device.bytes), 'restore = device, byte for byte');
    t.true(image.equals(fs.readFileSync(g.ddev)), 'restore = data device');

    const old = restoredImage(await ok('restore', 'vol', String(g.oldGid), '--wait', '--json'));
    t.is(old.length, grown, 'an older snapshot restores at the new size');
    t.true(old.subarray(0, SIZE).equals(g.oldBytes), 'what it held');
    t.true(old.subarray(SIZE).equals(Buffer.alloc(GROWTH)), 'the new area zero');
  },
);

test.serial(
  'm3: a storage grown without its archive is not restorable and the proxy gives up; the archive grown and kick-all make it restorable',
  async (t) => {
    const g = group!;
    const { ok } = walbcOn(t, g.layout);
    const before = SIZE + GROWTH;
    const grown = before + GROWTH;
    fs.truncateSync(g.ddev, grown);
    const storageOnly = JSON.parse(await ok('call', 's0', 'Resize', '{"volume":"vol","size":0}')) as {
      size: number;
    };
    t.is(Number(storageOnly.size), grown / 512, "size 0: the data device's size");
    await writeAt(g, before + MiB, MiB);
    const gid = Number(await ok('snapshot', 'vol'));
    await waitUntil(
      async () => (await ok('is-wdiff-send-error', 'vol')) === '1',
      () => 'the proxy to give up on a0',
      30_000,
    );
    t.regex(
      await ok('get', 'p0', 'proxy-diff', 'vol'),
      /^a0\t[1-9]\d*\t\d+$/,
      'the wdiff waits on the proxy',
    );
    t.false(
      (await ok('get-restorable', 'vol', '--all')).split('\n').some((l) => l.startsWith(`${gid} `)),
      'not restorable',
    );
    t.is(await ok('get', 'a0', 'vol-size', 'vol'), String(before / 512));

    const said = await ok('resize', 'vol', `${grown / MiB}M`);
    t.is(
      said,
      `a0: vol is ${grown / 512} LB\ns0: vol is ${grown / 512} LB`,
      'the storage again: nothing to do',
    );
    await ok('kick-all');
    await waitUntil(
      async () =>
        (await ok('get-restorable', 'vol', '--all')).split('\n').some((l) => l.startsWith(`${gid} `)),
      () => `gid ${gid} to become restorable`,
      30_000,
    );
    t.is(await ok('is-wdiff-send-error', 'vol'), '0');
    const image = restoredImage(await ok('restore', 'vol', String(gid), '--wait', '--json'));
    t.true(image.equals((await readDevice(g)).bytes), 'restore = device, byte for byte');
  },
);

test.serial(
  'n11b: data device +4 MiB, walbc resize without zero-clear, writes in the new area; a hash backup finds the archive equal to the device and sends nothing',
  async (t) => {
    const g = group!;
    const { ok } = walbcOn(t, g.layout);
    const before = SIZE + 2 * GROWTH;
    const grown = before + GROWTH;
    fs.truncateSync(g.ddev, grown);
    await ok('resize', 'vol', `${grown / MiB}M`);
    await writeAt(g, before + MiB, MiB);
    const gid = Number(await ok('snapshot', 'vol', '--wait'));
    const image = restoredImage(await ok('restore', 'vol', String(gid), '--wait', '--json'));
    t.true(image.equals((await readDevice(g)).bytes), 'restore = device, byte for byte');

    await ok('stop', 'vol', 's0', '--wait');
    const hashed = JSON.parse(await ok('hash-backup', 'vol', '--wait', '--json')) as { gid: number };
    const s0 = g.servers.find((s) => s.binary === 'walb-storage')!;
    const done = s0.stderr.split('\n').filter((l) => l.includes('"event":"hash-backup-done"'));
    t.is((JSON.parse(done[done.length - 1]) as { sentBytes: number }).sentBytes, 0, 'every chunk was equal');
    const after = restoredImage(await ok('restore', 'vol', String(hashed.gid), '--wait', '--json'));
    t.true(after.equals((await readDevice(g)).bytes), 'the hash backup restores to the device');
  },
);
