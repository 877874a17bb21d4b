// The archive's file backend for one volume: full backup into a sparse base, diffs checked and registered, the
// restorable list, restore of any clean snapshot byte for byte, and recovery of what a crash leaves behind.
// Ground truth: the same wlogs redone one after another onto a copy of the base image.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  applyChain,
  diffVerdict,
  latestSnap,
  mergeRun,
  restorableSnaps,
  snapshotFlagDiffs,
} from '../../src/archive/policy';
import { ArchiveVolumeStore } from '../../src/archive/volume-store';
import { diff, diffFileName, diffText, snap } from '../../src/common/meta';
import { native } from '../../src/native';
import { tempArea } from '../temp-files';

const tmp = tempArea('archive-store');
test.after.always(() => tmp.cleanup());

const SIZE = 16 << 20;
const UUID = 'aa'.repeat(16);

/** A base image, four wlogs in a row, the wdiffs made from them and the image after each one. */
async function fixture(name: string) {
  const dir = tmp.name(name);
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, 'base.src');
  const img = crypto.randomBytes(SIZE);
  img.fill(0, 4 << 20, 8 << 20); // a hole
  fs.writeFileSync(base, img);
  const truth: string[] = [base];
  const wdiffs: string[] = [];
  let lsid = 0;
  for (let i = 1; i <= 4; i++) {
    const wlog = path.join(dir, `${i}.wlog`);
    const g = await native.wlogGen(wlog, {
      deviceSize: SIZE / 512,
      amount: 2 << 20,
      discardRatio: 0.05,
      allZeroRatio: 0.05,
      lsid,
      seed: 100 + i,
    });
    lsid = g.endLsid;
    const wdiff = path.join(dir, `${i}.wdiff`);
    await native.wlogToWdiff([wlog], wdiff, { indexed: i % 2 === 0 });
    wdiffs.push(wdiff);
    const t = path.join(dir, `truth${i}.img`);
    fs.copyFileSync(truth[i - 1], t);
    await native.wlogRedo(wlog, t, { discard: 'zero' });
    truth.push(t);
  }
  return { dir, base, img, truth, wdiffs };
}

async function fullBackup(store: ArchiveVolumeStore, img: Buffer): Promise<void> {
  const target = await store.beginFullSync(SIZE / 512);
  const h = await fs.promises.open(target, 'r+');
  for (let off = 0; off < img.length; off += 1 << 20) {
    const bulk = img.subarray(off, off + (1 << 20));
    if (!bulk.every((b) => b === 0)) await h.write(bulk, 0, bulk.length, off); // zero bulks stay holes
  }
  await h.close();
  await store.finishFullSync(snap(0), 1_700_000_000, UUID, SIZE / 512);
}

async function offer(store: ArchiveVolumeStore, file: string, d: ReturnType<typeof diff>) {
  const verdict = diffVerdict(store, d, UUID);
  if (verdict !== 'accept') return verdict;
  const t = store.tempPath();
  fs.copyFileSync(file, t);
  await store.addDiff(t, d);
  return verdict;
}

test('full backup, then diffs: every clean snapshot restores to the bytes the device had', async (t) => {
  const f = await fixture('restore');
  const data = tmp.name('restore-data');
  const store = await ArchiveVolumeStore.init(data, 'vol0');
  t.is(store.state, 'SyncReady');
  t.deepEqual(restorableSnaps(store, false), []);
  await fullBackup(store, f.img);
  t.is(store.state, 'Archived');
  t.regex(store.archiveUuid, /^[0-9a-f]{32}$/);
  t.is(await offer(store, f.wdiffs[0], diff(snap(0), snap(1), { timestamp: 1_700_000_001 })), 'accept');
  t.is(
    await offer(store, f.wdiffs[1], diff(snap(1), snap(2), { isMergeable: true, timestamp: 1_700_000_002 })),
    'accept',
  );
  t.is(await offer(store, f.wdiffs[3], diff(snap(3), snap(4), { timestamp: 1_700_000_004 })), 'too-new-diff');
  t.is(await offer(store, f.wdiffs[2], diff(snap(2), snap(3), { timestamp: 1_700_000_003 })), 'accept');
  t.is(await offer(store, f.wdiffs[3], diff(snap(3), snap(4), { timestamp: 1_700_000_004 })), 'accept');
  t.is(diffVerdict(store, diff(snap(1), snap(2)), UUID), 'too-old-diff');
  t.is(diffVerdict(store, diff(snap(4), snap(5)), 'bb'.repeat(16)), 'different-uuid');
  t.deepEqual(
    restorableSnaps(store, true).map((r) => [r.gid, r.isExplicit]),
    [
      [0, true],
      [1, false],
      [2, true],
      [3, true],
      [4, true],
    ],
  );
  t.deepEqual(
    restorableSnaps(store, false).map((r) => r.gid),
    [0, 2, 3, 4],
    'gid 1 is implicit (merged into 2 by the next diff)',
  );
  for (const gid of [0, 2, 4, 1]) {
    const out = await store.restore(gid);
    t.true(fs.readFileSync(out).equals(fs.readFileSync(f.truth[gid])), `gid ${gid} restores byte for byte`);
  }
  t.deepEqual(store.listRestored(), [0, 1, 2, 4]);
  await t.throwsAsync(store.restore(2), { message: /is restored/ });
  await t.throwsAsync(store.restore(7), { message: /not restorable/ });
  await store.delRestored(2);
  t.deepEqual(store.listRestored(), [0, 1, 4]);
});

test('reopening after a crash removes temporary files and diffs the chain no longer needs, and keeps the rest', async (t) => {
  const f = await fixture('recover');
  const data = tmp.name('recover-data');
  const store = await ArchiveVolumeStore.init(data, 'vol1');
  await fullBackup(store, f.img);
  await offer(store, f.wdiffs[0], diff(snap(0), snap(1), { timestamp: 1 }));
  await offer(store, f.wdiffs[1], diff(snap(1), snap(2), { isMergeable: true, timestamp: 2 }));
  // A proxy re-sent 1→2 merged with 2→3 after a lost ack: the longer diff supersedes the shorter one.
  const merged = tmp.name('merged.wdiff');
  await native.wdiffMerge([f.wdiffs[1], f.wdiffs[2]], merged, {});
  await offer(store, merged, diff(snap(1), snap(3), { isMergeable: true, timestamp: 3 }));
  // A half-received wdiff and a half-restored image, as a kill -9 leaves them.
  fs.writeFileSync(store.tempPath(), 'partial');
  fs.writeFileSync(path.join(store.dir, 'restored', '.tmp-3.img'), 'partial');
  const before = fs.readdirSync(store.dir).filter((n) => n.endsWith('.wdiff')).length;
  t.is(before, 3);

  const again = await ArchiveVolumeStore.open(data, 'vol1');
  t.false(
    fs.readdirSync(again.dir).some((n) => n.startsWith('.tmp-')),
    'temporary files are gone',
  );
  t.false(fs.readdirSync(path.join(again.dir, 'restored')).some((n) => n.startsWith('.tmp-')));
  t.deepEqual(
    again.diffs.all().map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
    ['0-1', '1-3'],
    'the shorter duplicate 1-2 was collected',
  );
  t.is(latestSnap(again.base!, again.diffs).gidB, 3);
  const out = await again.restore(3);
  t.true(fs.readFileSync(out).equals(fs.readFileSync(f.truth[3])));
});

test('a volume whose metadata says Archived but whose base image is gone is reported, not served', async (t) => {
  const data = tmp.name('broken-data');
  const store = await ArchiveVolumeStore.init(data, 'vol2');
  await store.beginFullSync(2048);
  await store.finishFullSync(snap(0), 1, UUID, 2048);
  fs.rmSync(store.baseImage);
  const err = await t.throwsAsync(ArchiveVolumeStore.open(data, 'vol2'));
  t.is((err as { code?: string }).code, 'CORRUPTION');
  t.regex(err!.message, /base image .* is missing/);
  await t.throwsAsync(ArchiveVolumeStore.init(data, 'bad/name'), { message: /bad volume name/ });
  await t.throwsAsync(ArchiveVolumeStore.open(data, 'nothere'), { message: /no volume nothere/ });
});

test('a received wdiff is verified before it is kept: a corrupt one leaves no file and no diff behind', async (t) => {
  const f = await fixture('receive');
  const store = await ArchiveVolumeStore.init(tmp.name('receive-data'), 'vol3');
  await fullBackup(store, f.img);
  const bytes = fs.readFileSync(f.wdiffs[0]);
  const corrupt = Buffer.from(bytes);
  corrupt[corrupt.length - 1] ^= 0xff;
  async function* chunks(b: Buffer) {
    for (let off = 0; off < b.length; off += 1 << 16) yield b.subarray(off, off + (1 << 16));
  }
  const d = diff(snap(0), snap(1), { timestamp: 1_700_000_001 });
  const err = await t.throwsAsync(store.receiveDiff(chunks(corrupt), d));
  t.is((err as { code?: string }).code, 'CORRUPTION');
  t.deepEqual(
    fs.readdirSync(store.dir).filter((n) => n !== 'meta.json' && n !== 'base.img' && n !== 'restored'),
    [],
  );
  t.deepEqual(store.diffs.all(), []);
  const kept = await store.receiveDiff(chunks(bytes), d);
  t.is(kept.dataSize, bytes.length);
  t.true(fs.readFileSync(store.diffPath(kept)).equals(bytes));
});

test('the base image of a full backup refuses a bulk that is unaligned or ends past the volume', async (t) => {
  const store = await ArchiveVolumeStore.init(tmp.name('writer-data'), 'vol4');
  await store.beginFullSync(2048);
  const w = await store.baseImageWriter(2048, 1 << 20);
  try {
    await w.write(2047 * 512, Buffer.alloc(512, 7));
    await t.throwsAsync(w.write(100, Buffer.alloc(512)), { message: /outside the volume/ });
    await t.throwsAsync(w.write(2047 * 512, Buffer.alloc(1024)), { message: /outside the volume/ });
  } finally {
    await w.close();
  }
  t.true(
    fs
      .readFileSync(store.baseImage)
      .subarray(2047 * 512)
      .equals(Buffer.alloc(512, 7)),
  );
  t.is(fs.statSync(store.baseImage).size, 2048 * 512);
});

test('a grown base image keeps its bytes and reads zeros beyond, its size survives a reopen, and an older snapshot restores at the new size', async (t) => {
  const f = await fixture('grow');
  const data = tmp.name('grow-data');
  const store = await ArchiveVolumeStore.init(data, 'vol0');
  await fullBackup(store, f.img);
  t.is(await offer(store, f.wdiffs[0], diff(snap(0), snap(1), { timestamp: 1_700_000_001 })), 'accept');
  const grown = SIZE + (4 << 20);
  const sparseBlocks = fs.statSync(store.baseImage).blocks;
  await store.grow(grown / 512, false);
  t.is(fs.statSync(store.baseImage).size, grown);
  t.is(fs.statSync(store.baseImage).blocks, sparseBlocks, 'without zero-clear the new area is a hole');
  await store.grow(grown / 512 + 2048, true);
  t.true(
    fs.statSync(store.baseImage).blocks >= sparseBlocks + 2048,
    'with zero-clear the new area is written (as zeros)',
  );
  const bigger = grown + (1 << 20);
  t.is((await ArchiveVolumeStore.open(data, 'vol0')).sizeLb, bigger / 512);
  const image = fs.readFileSync(await store.restore(1));
  t.is(image.length, bigger);
  t.true(image.subarray(0, SIZE).equals(fs.readFileSync(f.truth[1])), 'the snapshot as it was');
  t.true(image.subarray(SIZE).equals(Buffer.alloc(bigger - SIZE)), 'zeros beyond');
});

test('a crash between growing the base image and writing the size leaves a volume that opens and grows again', async (t) => {
  const f = await fixture('grow-crash');
  const data = tmp.name('grow-crash-data');
  const store = await ArchiveVolumeStore.init(data, 'vol0');
  await fullBackup(store, f.img);
  fs.truncateSync(store.baseImage, SIZE + (8 << 20)); // the image grown, the size not written
  const reopened = await ArchiveVolumeStore.open(data, 'vol0');
  t.is(reopened.sizeLb, SIZE / 512);
  await reopened.grow((SIZE + (4 << 20)) / 512, true);
  t.is(fs.statSync(reopened.baseImage).size, SIZE + (4 << 20));
  t.is((await ArchiveVolumeStore.open(data, 'vol0')).sizeLb, (SIZE + (4 << 20)) / 512);
  t.true(
    fs
      .readFileSync(await reopened.restore(0))
      .subarray(0, SIZE)
      .equals(f.img),
  );
});

test('a resync drops the restored images and diffs, sizes the base image as the source, keeps SyncReady with the old lineage until it finishes, then adopts the source lineage', async (t) => {
  const f = await fixture('resync');
  const data = tmp.name('resync-data');
  const store = await ArchiveVolumeStore.init(data, 'vol0');
  await fullBackup(store, f.img);
  await offer(store, f.wdiffs[0], diff(snap(0), snap(1)));
  await store.restore(1);
  const lineage = store.archiveUuid;

  await store.dropForResync();
  t.deepEqual(store.diffs.all(), []);
  t.deepEqual(store.listRestored(), []);
  t.deepEqual(
    fs.readdirSync(store.dir).filter((n) => n.endsWith('.wdiff')),
    [],
    'no wdiff file is left',
  );
  await t.throwsAsync(store.beginResync(2 * (SIZE / 512)), { code: 'FAILED_PRECONDITION' } as object);
  await store.setState('SyncReady');

  await store.beginResync(2 * (SIZE / 512));
  t.is(fs.statSync(store.baseImage).size, 2 * SIZE, 'grown to the source size');
  t.true(fs.readFileSync(store.baseImage).subarray(0, SIZE).equals(f.img), 'the old bytes stay');
  const reopened = await ArchiveVolumeStore.open(data, 'vol0');
  t.is(reopened.state, 'SyncReady', 'a crash half-way leaves SyncReady');
  t.is(reopened.archiveUuid, lineage, 'the lineage is adopted only at the end');
  t.is(reopened.sizeLb, 2 * (SIZE / 512));

  await store.beginResync(SIZE / 1024);
  t.is(fs.statSync(store.baseImage).size, SIZE / 2, 'cut to a smaller source');
  const base = { snapB: snap(0, 7), timestamp: 1_700_000_500 };
  await store.finishResync({ base, archiveUuid: 'cc'.repeat(16), storageUuid: 'dd'.repeat(16) });
  const after = await ArchiveVolumeStore.open(data, 'vol0');
  t.is(after.state, 'Archived');
  t.deepEqual(after.base, base);
  t.is(after.archiveUuid, 'cc'.repeat(16));
  t.is(after.storageUuid, 'dd'.repeat(16));
  t.is(after.sizeLb, SIZE / 1024);
});

/** A backed-up volume holding the fixture's four diffs (|1| implicit: 1→2 is mergeable). */
async function withFourDiffs(name: string) {
  const f = await fixture(name);
  const data = tmp.name(`${name}-data`);
  const store = await ArchiveVolumeStore.init(data, 'vol0');
  await fullBackup(store, f.img);
  await offer(store, f.wdiffs[0], diff(snap(0), snap(1), { timestamp: 1_700_000_001 }));
  await offer(store, f.wdiffs[1], diff(snap(1), snap(2), { isMergeable: true, timestamp: 1_700_000_002 }));
  await offer(store, f.wdiffs[2], diff(snap(2), snap(3), { timestamp: 1_700_000_003 }));
  await offer(store, f.wdiffs[3], diff(snap(3), snap(4), { timestamp: 1_700_000_004 }));
  return { f, data, store };
}

const active = (store: ArchiveVolumeStore) => ({
  state: 'Archived' as const,
  stop: 'not-stopping' as const,
  stored: store,
});
const sameBytes = (a: string, b: string) => fs.readFileSync(a).equals(fs.readFileSync(b));

test('apply writes the diffs up to gid into the base image: the base is that snapshot, older ones leave the list, later ones restore byte for byte', async (t) => {
  const { f, store } = await withFourDiffs('apply');
  const early = await store.restore(1);
  t.is(applyChain('vol0', active(store), [], 2).length, 2);
  await store.apply(2);
  t.deepEqual(store.base, { snapB: snap(2), timestamp: 1_700_000_002 });
  t.true(sameBytes(store.baseImage, f.truth[2]), 'the base image is snapshot 2');
  t.deepEqual(
    store.diffs.all().map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
    ['2-3', '3-4'],
    'the consumed diffs are deleted',
  );
  t.deepEqual(
    restorableSnaps(store, true).map((r) => r.gid),
    [2, 3, 4],
  );
  for (const gid of [3, 4]) t.true(sameBytes(await store.restore(gid), f.truth[gid]), `gid ${gid}`);
  t.true(sameBytes(early, f.truth[1]), 'an image restored before stays as it was');
  await t.throwsAsync(store.apply(1), { code: 'INVALID_ARGUMENT', message: /not restorable/ } as object);
});

test('an apply killed half-way (its applying state written, the base image partly overwritten) finishes at the next open with the same bytes', async (t) => {
  const { f, data, store } = await withFourDiffs('apply-crash');
  // What a kill -9 in the middle of `apply 3` leaves: the applying state, then the first diffs written and part of
  // the third (here: the first MiB as it is once all three are written).
  const metaFile = path.join(store.dir, 'meta.json');
  const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
  fs.writeFileSync(metaFile, JSON.stringify({ ...meta, base: { ...meta.base, snapE: snap(3) } }));
  for (const d of store.diffs.all().slice(0, 2))
    await native.wdiffRedo(store.diffPath(d), store.baseImage, { discard: 'zero' });
  const h = fs.openSync(store.baseImage, 'r+');
  fs.writeSync(h, fs.readFileSync(f.truth[3]).subarray(0, 1 << 20), 0, 1 << 20, 0);
  fs.closeSync(h);

  const again = await ArchiveVolumeStore.open(data, 'vol0');
  t.deepEqual(again.base, { snapB: snap(3), timestamp: 1_700_000_003 });
  t.true(sameBytes(again.baseImage, f.truth[3]), 'the redo of the whole list gives the bytes of snapshot 3');
  t.deepEqual(
    again.diffs.all().map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
    ['3-4'],
  );
  t.true(sameBytes(await again.restore(4), f.truth[4]));
});

test('merge replaces a mergeable run by one sorted wdiff: every snapshot that stays restorable restores byte for byte', async (t) => {
  const { f, store } = await withFourDiffs('merge');
  const run = mergeRun('vol0', active(store), [], 0, 2);
  const merged = await store.merge(run.diffs, run.merged);
  t.is(diffText(merged), '|0|---->|2|');
  t.true(fs.existsSync(store.diffPath(merged)));
  t.deepEqual(
    store.diffs.all().map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
    ['0-2', '2-3', '3-4'],
  );
  t.is(fs.readdirSync(store.dir).filter((n) => n.endsWith('.wdiff')).length, 3, 'the inputs are deleted');
  t.deepEqual(
    restorableSnaps(store, true).map((r) => r.gid),
    [0, 2, 3, 4],
    'the implicit |1| is gone',
  );
  for (const gid of [2, 3, 4]) t.true(sameBytes(await store.restore(gid), f.truth[gid]), `gid ${gid}`);
});

test('a merge killed after its diff was renamed in but before its inputs were deleted: the next open deletes the inputs', async (t) => {
  const { f, data, store } = await withFourDiffs('merge-crash');
  const merged = diff(snap(0), snap(2), { timestamp: 1_700_000_002 });
  const file = path.join(store.dir, diffFileName(merged));
  await native.wdiffMerge([f.wdiffs[0], f.wdiffs[1]], file, { compression: 'snappy' });
  const again = await ArchiveVolumeStore.open(data, 'vol0');
  t.deepEqual(
    again.diffs.all().map((d) => `${d.snapB.gidB}-${d.snapE.gidB}`),
    ['0-2', '2-3', '3-4'],
  );
  t.true(sameBytes(await again.restore(2), f.truth[2]));
});

test('disabling a snapshot renames the diffs starting at it as mergeable, which survives a reopen; enabling renames them back', async (t) => {
  const { data, store } = await withFourDiffs('flags');
  const names = () =>
    fs
      .readdirSync(store.dir)
      .filter((n) => n.endsWith('.wdiff'))
      .sort();
  const before = names();
  await store.setMergeable(snapshotFlagDiffs('vol0', active(store), [], [2, 3], true), true);
  t.true(names().every((n) => n.includes('-M-')) === false);
  t.deepEqual(
    names().map((n) => n.slice(15, 17)),
    ['--', 'M-', 'M-', 'M-'],
  );
  const again = await ArchiveVolumeStore.open(data, 'vol0');
  t.deepEqual(
    restorableSnaps(again, false).map((r) => r.gid),
    [0, 4],
  );
  await again.setMergeable(snapshotFlagDiffs('vol0', active(again), [], [2, 3], false), false);
  t.deepEqual(names(), before);
  t.deepEqual(
    restorableSnaps(again, false).map((r) => r.gid),
    [0, 2, 3, 4],
  );
});

test('disk usage counts the allocated blocks of the sparse base image, the wdiffs and the restored images', async (t) => {
  const { f, store } = await withFourDiffs('usage');
  const u = store.diskUsage();
  t.true(u.baseBytes >= SIZE - (4 << 20) && u.baseBytes < SIZE, `the hole is not counted (${u.baseBytes})`);
  const files = f.wdiffs.reduce((a, w) => a + fs.statSync(w).size, 0);
  t.true(
    u.diffBytes >= files && u.diffBytes < files + 4 * 4096,
    `wdiffs are whole files, in whole blocks (${u.diffBytes} for ${files})`,
  );
  t.is(u.restoredBytes, 0);
  await store.restore(4);
  t.true(store.diskUsage().restoredBytes > 0);
});
