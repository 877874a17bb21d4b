// The proxy's files of one volume (src/proxy/volume-store.ts) on a real directory: registrations in archives.json,
// a kept wdiff linked once into every archive's queue, what a start recovers after a crash, and the counts the
// status and `stop empty` read. The store never reads a wdiff's bytes, so the files here are plain bytes.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { diff, diffFileName, snap } from '../../src/common/meta';
import { ProxyVolumeStore } from '../../src/proxy/volume-store';
import { tempArea } from '../temp-files';

const tmp = tempArea('proxy-store');
test.after.always(() => tmp.cleanup());

const a0 = { name: 'a0', address: '127.0.0.1:1', compression: 'snappy', delaySec: 0 };
const a1 = { name: 'a1', address: '127.0.0.1:2', compression: 'zstd:1', delaySec: 5 };
const W1 = diffFileName(diff(snap(0), snap(1), { isMergeable: true, timestamp: 1 }));
const W2 = diffFileName(diff(snap(1), snap(2), { isMergeable: true, timestamp: 2 }));

/** A volume with archives a0 and a1 in a fresh data directory. */
async function twoArchives(name: string) {
  const dataDir = tmp.name(name);
  const store = ProxyVolumeStore.empty(dataDir, 'vol');
  await store.putArchive(a0);
  await store.putArchive(a1);
  return { dataDir, store, dir: path.join(dataDir, 'vol') };
}

/** A wdiff written in received/ and kept under `name`. */
async function keep(store: ProxyVolumeStore, name: string, bytes: number): Promise<void> {
  const tmpFile = store.stagingPath('wdiff');
  fs.writeFileSync(tmpFile, Buffer.alloc(bytes, 7));
  await store.keepWdiff(tmpFile, name);
}

test('a volume with no archive has nothing on disk; the first registration writes archives.json and the queue', async (t) => {
  const dataDir = tmp.name('first');
  const store = ProxyVolumeStore.empty(dataDir, 'vol');
  t.false(fs.existsSync(path.join(dataDir, 'vol')));
  await store.putArchive(a0);
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(dataDir, 'vol', 'archives.json'), 'utf8')), {
    version: 1,
    archives: [a0],
    size: 0,
  });
  t.true(fs.statSync(path.join(dataDir, 'vol', 'sendto', 'a0')).isDirectory());
  t.true(fs.statSync(path.join(dataDir, 'vol', 'received')).isDirectory());
});

test('an update replaces the registration; a removal drops it and its queue; loadAll reads what was saved', async (t) => {
  const { dataDir, store, dir } = await twoArchives('update');
  await store.putArchive({ ...a0, address: '127.0.0.1:9' });
  await store.removeArchive('a1');
  t.false(fs.existsSync(path.join(dir, 'sendto', 'a1')));
  fs.mkdirSync(path.join(dataDir, 'not-a-volume'));
  const [loaded, ...others] = await ProxyVolumeStore.loadAll(dataDir);
  t.is(others.length, 0, 'a directory without archives.json is not a volume');
  t.is(loaded.volume, 'vol');
  t.deepEqual(loaded.archives, [{ ...a0, address: '127.0.0.1:9' }]);
});

test('a kept wdiff is one file linked into every queue and gone from received/', async (t) => {
  const { store, dir } = await twoArchives('keep');
  await keep(store, W1, 100);
  t.deepEqual(fs.readdirSync(path.join(dir, 'received')), []);
  const s0 = fs.statSync(path.join(dir, 'sendto', 'a0', W1));
  const s1 = fs.statSync(path.join(dir, 'sendto', 'a1', W1));
  t.is(s0.ino, s1.ino);
  t.is(s0.nlink, 2);
  t.deepEqual(
    store.queued('a0').map((q) => ({ ...q.diff, file: path.basename(q.file) })),
    [{ ...diff(snap(0), snap(1), { isMergeable: true, timestamp: 1, dataSize: 100 }), file: W1 }],
  );
});

test('a wdiff sent to one archive stays queued for the other', async (t) => {
  const { store } = await twoArchives('drop');
  await keep(store, W1, 100);
  await keep(store, W2, 50);
  await store.dropQueued(
    'a0',
    store.queued('a0').map((q) => q.file),
  );
  t.deepEqual(store.queued('a0'), []);
  t.deepEqual(await store.queueStatus('a1'), {
    pendingWdiffs: 2,
    pendingBytes: 150,
    queuedGids: [{ begin: 0, end: 2 }],
  });
  t.is(await store.pendingCount(), 2);
});

test('temporary files count nowhere: not queued, not pending, not in the status', async (t) => {
  const { store } = await twoArchives('temps');
  await keep(store, W1, 10);
  fs.writeFileSync(store.mergePath('a0'), 'partial merge');
  fs.writeFileSync(store.stagingPath('wlog'), 'partial wlog');
  t.is(store.queued('a0').length, 1);
  t.deepEqual(await store.queueStatus('a0'), {
    pendingWdiffs: 1,
    pendingBytes: 10,
    queuedGids: [{ begin: 0, end: 1 }],
  });
  t.is(await store.pendingCount(), 2);
});

test('recovery links a wdiff staged under its name into every queue and deletes what was being written', async (t) => {
  const { store, dir } = await twoArchives('recover');
  // A crash after the rename in received/, with the link into a0 made and the one into a1 not yet.
  fs.writeFileSync(path.join(dir, 'received', W1), 'staged');
  fs.linkSync(path.join(dir, 'received', W1), path.join(dir, 'sendto', 'a0', W1));
  const tmpWlog = store.stagingPath('wlog');
  fs.writeFileSync(tmpWlog, 'cut transfer');
  const merge = store.mergePath('a1');
  fs.writeFileSync(merge, 'cut merge');
  fs.writeFileSync(path.join(dir, 'received', 'operator-notes'), 'kept');
  await store.recover();
  t.deepEqual(fs.readdirSync(path.join(dir, 'received')), ['operator-notes']);
  t.deepEqual(fs.readdirSync(path.join(dir, 'sendto', 'a0')), [W1]);
  t.deepEqual(fs.readdirSync(path.join(dir, 'sendto', 'a1')), [W1]);
  t.is(fs.statSync(path.join(dir, 'sendto', 'a1', W1)).nlink, 2);
  t.false(fs.existsSync(merge));
});

test('the stored size only grows', async (t) => {
  const { dataDir, store } = await twoArchives('size');
  await store.raiseSize(2048);
  await store.raiseSize(1024);
  t.is(store.size, 2048);
  t.is((await ProxyVolumeStore.loadAll(dataDir))[0].size, 2048);
});

test('destroy deletes every file of the volume', async (t) => {
  const { store, dir } = await twoArchives('destroy');
  await keep(store, W1, 10);
  await store.destroy();
  t.false(fs.existsSync(dir));
});
