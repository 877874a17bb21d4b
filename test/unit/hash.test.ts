// Chunk hashes (docs/formats.md §7): chunk k covers [k*c, min((k+1)*c, size)), each hashed on its own as
// XXH3_128bits_withSeed and given in canonical (big-endian high64, low64) order. The function itself is pinned by
// the libxxhash vectors of docs/formats.md §7; the chunking by hashing every chunk again as a file of its own. The "whole" hash is
// pinned by its definition in docs/formats.md §7.1 (the hash of the concatenated chunk hashes) with values from xxhsum, and
// by virtual == materialized.
import test from 'ava';
import fs from 'node:fs';
import { native, type HashResult } from '../../src/native';
import { LB } from '../format-oracle';
import { runTool } from '../processes';
import { copyImage, prngBytes, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('hash');
test.after.always(() => tmp.cleanup());

const EMPTY = '99aa06d3014798d86001c324468d497f';
const ZERO_256K = '9aa295aead2a46612d64c035e85fb928';
const ZERO_256K_SEEDED = '2ac47490177bb4c79a7d7794babaf434';
const SEED = 0x0123456789abcdefn;

function chunkHex(chunks: Buffer | undefined): string[] {
  const out: string[] = [];
  for (let i = 0; chunks && i < chunks.length; i += 16) out.push(chunks.subarray(i, i + 16).toString('hex'));
  return out;
}

test('chunk hashes are XXH3-128 with the libxxhash vectors of docs/formats.md §7 (empty input, 256 KiB of zeros, seeded)', async (t) => {
  const empty = writeImage(tmp.name('empty.img'), 0);
  const e = await native.hashImage(empty, { chunks: true });
  t.is(e.whole.toString('hex'), EMPTY);
  t.is(e.bytes, 0);
  t.deepEqual(chunkHex(e.chunks), []);

  const zero = writeImage(tmp.name('zero.img'), 256 << 10);
  t.deepEqual(chunkHex((await native.hashImage(zero, { chunks: true })).chunks), [ZERO_256K]);
  t.deepEqual(chunkHex((await native.hashImage(zero, { chunks: true, seed: SEED })).chunks), [
    ZERO_256K_SEEDED,
  ]);
  const cli = await runTool(['hash', zero, '--chunks', '--json', '--seed', SEED.toString()]);
  t.is(cli.code, 0, cli.stderr);
  t.deepEqual(JSON.parse(cli.stdout).chunks, [ZERO_256K_SEEDED]);
});

test('an image has ceil(size/chunk) chunk hashes, each the XXH3-128 of its own bytes, the last one shorter', async (t) => {
  const chunk = 256 << 10;
  const size = 3 * chunk + 3 * LB; // chunks: zero, random, zero, 1536 random bytes
  const bytes = Buffer.alloc(size);
  prngBytes(1, chunk).copy(bytes, chunk);
  prngBytes(2, 3 * LB).copy(bytes, 3 * chunk);
  const image = tmp.name('mixed.img');
  fs.writeFileSync(image, bytes);
  for (const seed of [0n, SEED]) {
    const r = await native.hashImage(image, { chunks: true, seed });
    const hashes = chunkHex(r.chunks);
    t.is(hashes.length, Math.ceil(size / chunk));
    t.is(r.bytes, size);
    t.is(r.chunkSize, chunk);
    t.is(hashes[0], seed === 0n ? ZERO_256K : ZERO_256K_SEEDED);
    t.is(hashes[2], hashes[0]);
    for (const k of [1, 3]) {
      const part = tmp.name(`chunk${k}.img`);
      fs.writeFileSync(part, bytes.subarray(k * chunk, Math.min((k + 1) * chunk, size)));
      const alone = await native.hashImage(part, { seed, chunks: true });
      t.deepEqual(chunkHex(alone.chunks), [hashes[k]], `chunk ${k} hashes the same as a file of its own`);
    }
  }
  // Another chunk size gives its own chunking.
  const small = await native.hashImage(image, { chunks: true, chunkSize: 64 << 10 });
  t.is(chunkHex(small.chunks).length, Math.ceil(size / (64 << 10)));
  await t.throwsAsync(native.hashImage(image, { chunkSize: 1000 }), { code: 'INVALID_ARGUMENT' });
});

test('the hash of a virtual full image equals the hash of the materialized image, whole and per chunk', async (t) => {
  const deviceLb = 8192 + 3; // not a whole number of chunks
  const wlog = tmp.name('h.wlog');
  await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: deviceLb,
    amount: 1 << 20,
    discardRatio: 0.1,
    allZeroRatio: 0.1,
    seed: 71,
  });
  const base = writeImage(tmp.name('h-base.img'), deviceLb * LB, 72);
  const d1 = tmp.name('h1.wdiff');
  const d2 = tmp.name('h2.wdiff');
  await native.wlogToWdiff([wlog], d1, {});
  const wlog2 = tmp.name('h2.wlog');
  await native.wlogGen(wlog2, { pbs: 512, deviceSize: deviceLb, amount: 512 << 10, seed: 73 });
  await native.wlogToWdiff([wlog2], d2, { indexed: true });
  const image = copyImage(base, tmp.name('h.img'));
  await native.wdiffRedo(d1, image, { discard: 'zero' });
  await native.wdiffRedo(d2, image, { discard: 'zero' });

  const opts = { chunks: true, chunkSize: 128 << 10, seed: 12345 };
  const real = await native.hashImage(image, opts);
  const virtual = new native.VirtualFull(base, [d1, d2]);
  let virt: HashResult;
  try {
    virt = await virtual.hash(opts);
  } finally {
    virtual.close();
  }
  t.is(virt.whole.toString('hex'), real.whole.toString('hex'));
  t.true(virt.chunks!.equals(real.chunks!));
  t.is(chunkHex(real.chunks).length, Math.ceil((deviceLb * LB) / (128 << 10)));
  const baseHash = await native.hashImage(base, opts);
  t.not(baseHash.whole.toString('hex'), real.whole.toString('hex'));

  const cliVirt = await runTool([
    'hash',
    base,
    d1,
    d2,
    '--chunks',
    '--json',
    '--chunk',
    '128K',
    '--seed',
    '12345',
  ]);
  const cliReal = await runTool(['hash', image, '--chunks', '--json', '--chunk', '128K', '--seed', '12345']);
  t.is(cliVirt.code, 0, cliVirt.stderr);
  t.is(cliReal.code, 0, cliReal.stderr);
  const v = JSON.parse(cliVirt.stdout);
  const r = JSON.parse(cliReal.stdout);
  t.is(v.whole, real.whole.toString('hex'));
  t.deepEqual(v.chunks, chunkHex(real.chunks));
  t.deepEqual(r.chunks, v.chunks);
});

test('the whole-image hash is XXH3-128 over the concatenated canonical chunk hashes, not over the bytes (docs/formats.md §7.1)', async (t) => {
  // 600 KiB of "walb\n" (yes walb | head -c 614400): chunks of 256, 256 and 88 KiB. The values were computed
  // independently with xxhsum 0.8.1: xxh128sum of each chunk, then of the 48 bytes of those hashes; the last one
  // is xxh128sum of the file itself.
  const image = tmp.name('walb.img');
  fs.writeFileSync(image, Buffer.alloc(614400, 'walb\n'));
  const r = await native.hashImage(image, { chunks: true });
  t.deepEqual(chunkHex(r.chunks), [
    'd78a155d147b2ecb5dea356596fe3f7d',
    '7f0402c289c6dec21e0634c804278253',
    '3d4b4040908f1c0bc9f24005216d8a22',
  ]);
  t.is(r.whole.toString('hex'), 'a47098c266dacc0bac9507dc0fc5df18');
  t.not(
    r.whole.toString('hex'),
    'ceae93c00e3d71511e2bfccff69c4922',
    'not the XXH3-128 of the file (xxhsum -H2)',
  );
  const cli = await runTool(['hash', image]);
  t.is(cli.code, 0, cli.stderr);
  t.is(cli.stdout.split(/\s+/)[0], 'a47098c266dacc0bac9507dc0fc5df18');
  // The same definition with a seed: the chunk hashes, written to a file shorter than one chunk, hash (as that
  // file's single chunk) to the whole-image hash.
  for (const seed of [0n, SEED]) {
    const img = await native.hashImage(image, { seed, chunks: true });
    const hashes = tmp.name('hashes.bin');
    fs.writeFileSync(hashes, img.chunks!);
    const again = await native.hashImage(hashes, { seed, chunkSize: 512, chunks: true });
    t.is(chunkHex(again.chunks)[0], img.whole.toString('hex'), `seed ${seed}`);
    if (seed === SEED) t.is(img.whole.toString('hex'), 'dded81443ed9a25425a1db13c09e9758');
  }
});
