// The random-access snapshot reader behind `walbc export` (native/src/core/snapshot_image.hpp, docs/servers.md
// §6.10): a base image and a chain of wdiffs read at random offsets give the bytes of the restored image, whatever
// the chain mixes (sorted and indexed wdiffs, compressed or not, all-zero and discard records, overlaps between
// diffs), and a record whose data does not match its checksum fails the read that needs it.
import test from 'ava';
import fs from 'node:fs';
import { native, type NativeNbdSnapshot } from '../../src/native';
import { LB } from '../format-oracle';
import { copyImage, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('snapshot-reader');
test.after.always(() => tmp.cleanup());

/** Deterministic offsets and lengths (xorshift32). */
function* ranges(seed: number, sizeLb: number, count: number, maxLb: number) {
  let x = seed >>> 0;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  for (let i = 0; i < count; i++) {
    const lb = 1 + (next() % maxLb);
    const at = next() % (sizeLb - lb + 1);
    yield { offset: at * LB, length: lb * LB };
  }
}

/** A chain of wdiffs of random writes over one device, each in its own format, and the image restoring them. */
async function chain(
  deviceLb: number,
  formats: { indexed?: boolean; compression?: 'none' | 'snappy' | 'zstd' }[],
): Promise<{ base: string; diffs: string[]; restored: string }> {
  const base = writeImage(tmp.name('base.img'), deviceLb * LB, 7);
  const restored = copyImage(base, tmp.name('restored.img'));
  const diffs: string[] = [];
  for (const [i, f] of formats.entries()) {
    const wlog = tmp.name(`${i}.wlog`);
    await native.wlogGen(wlog, {
      pbs: 512,
      deviceSize: deviceLb,
      amount: 256 << 10,
      maxIoSize: 128,
      data: 'compressible',
      discardRatio: 0.1,
      allZeroRatio: 0.1,
      seed: 100 + i,
    });
    const d = tmp.name(`${i}.wdiff`);
    await native.wlogToWdiff([wlog], d, { indexed: f.indexed, compression: f.compression });
    await native.wdiffRedo(d, restored, { discard: 'zero' });
    diffs.push(d);
  }
  return { base, diffs, restored };
}

async function opened(base: string, diffs: string[]): Promise<NativeNbdSnapshot> {
  const s = new native.NbdSnapshot(base, diffs, { threads: 2 });
  await s.open();
  return s;
}

test('random reads of a chain of sorted and indexed wdiffs (none, snappy, zstd) equal the restored image', async (t) => {
  const deviceLb = 4096 + 5;
  const { base, diffs, restored } = await chain(deviceLb, [
    { compression: 'snappy' },
    { indexed: true, compression: 'none' },
    { compression: 'none' },
    { indexed: true, compression: 'zstd' },
    { compression: 'zstd' },
  ]);
  const want = fs.readFileSync(restored);
  t.false(want.equals(fs.readFileSync(base)), 'the chain changes the image');
  const s = await opened(base, diffs);
  try {
    t.is(s.size, deviceLb * LB);
    const { extents, storedImages } = s.indexed();
    t.true(extents > 0 && storedImages > 0);
    for (const r of ranges(1, deviceLb, 400, 256)) {
      const got = await s.read(r);
      t.true(got.equals(want.subarray(r.offset, r.offset + r.length)), `bytes at ${r.offset}+${r.length}`);
    }
    // Twice over the same records: the second read of an uncompressed record goes by slice.
    for (const r of ranges(1, deviceLb, 100, 256)) {
      const got = await s.read(r);
      t.true(got.equals(want.subarray(r.offset, r.offset + r.length)), `again at ${r.offset}+${r.length}`);
    }
    const whole = await s.read({ offset: 0, length: deviceLb * LB });
    t.true(whole.equals(want), 'the whole image in one read');
  } finally {
    s.close();
  }
});

test('concurrent random reads from many promises at once all get the restored bytes', async (t) => {
  const deviceLb = 2048;
  const { base, diffs, restored } = await chain(deviceLb, [{ compression: 'snappy' }, { indexed: true }]);
  const want = fs.readFileSync(restored);
  const s = await opened(base, diffs);
  try {
    const all = [...ranges(9, deviceLb, 200, 64)];
    const got = await Promise.all(all.map((r) => s.read(r)));
    for (const [i, r] of all.entries())
      t.true(got[i].equals(want.subarray(r.offset, r.offset + r.length)), `bytes at ${r.offset}+${r.length}`);
  } finally {
    s.close();
  }
});

test('a snapshot with no diffs reads as its base image', async (t) => {
  const base = writeImage(tmp.name('alone.img'), 64 * LB, 3);
  const s = await opened(base, []);
  try {
    t.deepEqual(s.indexed(), { extents: 0, storedImages: 0 });
    t.true((await s.read({ offset: 0, length: 64 * LB })).equals(fs.readFileSync(base)));
  } finally {
    s.close();
  }
});

test('a record whose data no longer matches its checksum fails the read that needs it with CORRUPTION', async (t) => {
  const { base, diffs } = await chain(1024, [{ compression: 'none' }]);
  // The first record's data starts after the file header and the first pack header; flip a byte of it.
  const bytes = fs.readFileSync(diffs[0]);
  bytes[32 + 4096] ^= 0xff;
  fs.writeFileSync(diffs[0], bytes);
  const s = await opened(base, diffs);
  try {
    const errors = await Promise.allSettled(
      [...ranges(5, 1024, 200, 64)].map((r) => s.read(r)).concat(s.read({ offset: 0, length: 1024 * LB })),
    );
    const rejected = errors.filter((e) => e.status === 'rejected');
    t.true(rejected.length > 0);
    for (const e of rejected) t.is((e.reason as { code: string }).code, 'CORRUPTION');
  } finally {
    s.close();
  }
});

test('unaligned, out-of-range and closed reads are refused with INVALID_ARGUMENT', async (t) => {
  const base = writeImage(tmp.name('small.img'), 8 * LB, 4);
  const s = await opened(base, []);
  await t.throwsAsync(s.read({ offset: 100, length: LB }), { code: 'INVALID_ARGUMENT' });
  await t.throwsAsync(s.read({ offset: 4 * LB, length: 8 * LB }), { code: 'INVALID_ARGUMENT' });
  s.close();
  t.throws(() => s.read({ offset: 0, length: LB }), { code: 'INVALID_ARGUMENT' });
});

test('a chain naming a corrupt wdiff fails open() with CORRUPTION, a missing one with NOT_FOUND or IO_ERROR', async (t) => {
  const base = writeImage(tmp.name('b.img'), 8 * LB, 4);
  const bad = tmp.name('bad.wdiff');
  fs.writeFileSync(bad, Buffer.alloc(4096 + 32, 1));
  await t.throwsAsync(new native.NbdSnapshot(base, [bad]).open(), { code: 'CORRUPTION' });
  const err = await t.throwsAsync(new native.NbdSnapshot(base, [tmp.name('none.wdiff')]).open());
  t.true(['NOT_FOUND', 'IO_ERROR'].includes((err as { code?: string }).code ?? ''));
});
