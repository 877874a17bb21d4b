// The storage's volume.json (src/storage/volume-store.ts) on real files: written only by create(), loaded back
// with every field, concurrent updates applied one after another on the newest metadata, removed with its directory.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { StorageVolumeStore } from '../../src/storage/volume-store';
import { tempArea } from '../temp-files';

const tmp = tempArea('storage-store');
test.after.always(() => tmp.cleanup());

const MAX = 1000;

test('a blank volume is not on disk until create(), then loads back SyncReady with no done position', async (t) => {
  const dataDir = tmp.name('blank');
  const store = StorageVolumeStore.blank(dataDir, 'vol', 'wdev0');
  t.deepEqual(await StorageVolumeStore.loadAll(dataDir), [], 'loadAll creates the data directory, empty');
  await store.create();
  const [loaded] = await StorageVolumeStore.loadAll(dataDir);
  t.is(loaded.volume, 'vol');
  t.is(loaded.state, 'SyncReady');
  t.is(loaded.wdev, 'wdev0');
  t.is(loaded.uuid, '');
  t.deepEqual(loaded.records, { done: { lsid: -1, gid: -1, isMergeable: false, timestamp: 0 }, queue: [] });
});

test('directories without a volume.json are not volumes', async (t) => {
  const dataDir = tmp.name('stray');
  fs.mkdirSync(path.join(dataDir, 'half-cleared'), { recursive: true });
  await StorageVolumeStore.blank(dataDir, 'vol', 'wdev0').create();
  t.deepEqual(
    (await StorageVolumeStore.loadAll(dataDir)).map((s) => s.volume),
    ['vol'],
  );
});

test('concurrent snapshots each get their own gid and none is lost on disk', async (t) => {
  const dataDir = tmp.name('concurrent');
  const store = StorageVolumeStore.blank(dataDir, 'vol', 'wdev0');
  await store.create();
  await store.resetRecords('ab'.repeat(16));
  const recs = await Promise.all([100, 200, 300, 400].map((lsid) => store.addSnapshot(lsid, false, MAX)));
  t.deepEqual(
    recs.map((r) => r.gid),
    [1, 2, 3, 4],
  );
  const [loaded] = await StorageVolumeStore.loadAll(dataDir);
  t.is(loaded.uuid, 'ab'.repeat(16));
  t.deepEqual(
    loaded.records.queue.map((r) => [r.lsid, r.gid]),
    [
      [100, 1],
      [200, 2],
      [300, 3],
      [400, 4],
    ],
  );
});

test('an acknowledgement moves the done record and drops the consumed records, on disk', async (t) => {
  const dataDir = tmp.name('ack');
  const store = StorageVolumeStore.blank(dataDir, 'vol', 'wdev0');
  await store.create();
  await store.resetRecords('cd'.repeat(16));
  await store.addSnapshot(100, false, MAX);
  const second = await store.addSnapshot(200, true, MAX);
  await store.acknowledge({ lsid: 100, gid: 1, isMergeable: false, timestamp: 5 });
  await store.setState('Target');
  const [loaded] = await StorageVolumeStore.loadAll(dataDir);
  t.is(loaded.state, 'Target');
  t.deepEqual(loaded.records, {
    done: { lsid: 100, gid: 1, isMergeable: false, timestamp: 5 },
    queue: [second],
  });
});

test('refreshQueue writes only when the queue changes', async (t) => {
  const dataDir = tmp.name('refresh');
  const store = StorageVolumeStore.blank(dataDir, 'vol', 'wdev0');
  await store.create();
  await store.resetRecords('ef'.repeat(16));
  const file = path.join(dataDir, 'vol', 'volume.json');
  const written = fs.statSync(file).ino; // every write renames a new file over it
  t.deepEqual((await store.refreshQueue(0, MAX, 10)).queue, [], 'no logs: nothing queued');
  t.is(fs.statSync(file).ino, written);
  const { queue } = await store.refreshQueue(50, MAX, 10);
  t.not(fs.statSync(file).ino, written);
  t.is(queue.length, 1);
  t.true(queue[0].isMergeable, 'an implicit snapshot');
  t.deepEqual((await StorageVolumeStore.loadAll(dataDir))[0].records.queue, queue);
});

test('remove() deletes the volume directory', async (t) => {
  const dataDir = tmp.name('remove');
  const store = StorageVolumeStore.blank(dataDir, 'vol', 'wdev0');
  await store.create();
  await store.remove();
  t.false(fs.existsSync(path.join(dataDir, 'vol')));
  t.deepEqual(await StorageVolumeStore.loadAll(dataDir), []);
});
