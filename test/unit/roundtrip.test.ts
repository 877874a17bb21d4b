// Round trips and properties on random workloads: every path from a wlog to an image must give the same bytes
// (wlog redo, sorted and indexed wdiff redo, the merge of consecutive wdiffs, virtual full images through the
// addon and walb-tool), whatever the block size, ring padding, overlaps, discards, all-zero writes, data and
// compression. Discards are redone as zeros, which is how a virtual full image reads them.
import test from 'ava';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { native, readWdiffHeader, type Compression, type GenOptions } from '../../src/native';
import { allRecords, readVirtualFull } from '../addon-readers';
import {
  LB,
  buildEndBlock,
  buildSortedWdiff,
  buildWlog,
  buildWlogHeader,
  parseSortedWdiff,
  parseWlog,
  type DiffRecordSpec,
} from '../format-oracle';
import { runTool } from '../processes';
import { copyImage, firstDiff, prngBytes, sameBytes, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('roundtrip');
test.after.always(() => tmp.cleanup());

/** Cuts a wlog into `n` consecutive wlogs at pack boundaries (same uuid and salt, each with its own end block). */
function splitWlog(file: string, n: number): string[] {
  const bytes = fs.readFileSync(file);
  const w = parseWlog(bytes);
  const per = Math.ceil(w.packs.length / n);
  const out: string[] = [];
  for (let i = 0; i < w.packs.length; i += per) {
    const packs = w.packs.slice(i, i + per);
    const part = tmp.name(`part${out.length}.wlog`);
    const header = buildWlogHeader({
      pbs: w.pbs,
      salt: w.salt,
      uuid: Buffer.from(w.uuid, 'hex'),
      beginLsid: packs[0].lsid,
    });
    const body = bytes.subarray(packs[0].at, packs[packs.length - 1].end);
    fs.writeFileSync(part, Buffer.concat([header, body, buildEndBlock(w.pbs, w.salt)]));
    out.push(part);
  }
  return out;
}

const DEVICE_LB = 16384; // 8 MiB

const workloads: { title: string; opts: GenOptions }[] = [
  {
    title: 'pbs 512, ring wrap, overlaps, discards, all-zero writes, random data',
    opts: {
      pbs: 512,
      amount: 3 << 20,
      maxIoSize: 64,
      ringBufferSize: 2000,
      lsid: 1500,
      overlapRatio: 0.5,
      discardRatio: 0.1,
      allZeroRatio: 0.1,
      seed: 11,
    },
  },
  {
    title: 'pbs 4096, ring wrap, overlaps, discards, compressible data',
    opts: {
      pbs: 4096,
      amount: 3 << 20,
      maxIoSize: 128,
      ringBufferSize: 300,
      overlapRatio: 0.6,
      discardRatio: 0.15,
      data: 'compressible',
      seed: 12,
    },
  },
  {
    title: 'pbs 512, all data zero, heavy overlap',
    opts: {
      pbs: 512,
      amount: 2 << 20,
      maxIoSize: 32,
      ringBufferSize: 1000,
      overlapRatio: 0.9,
      discardRatio: 0.05,
      data: 'zero',
      seed: 13,
    },
  },
];

for (const [i, w] of workloads.entries()) {
  test(`wlog redo, sorted, indexed and merged wdiff redo, and virtual full reads give the same image (${w.title})`, async (t) => {
    const wlog = tmp.name('w.wlog');
    const g = await native.wlogGen(wlog, { deviceSize: DEVICE_LB, ...w.opts });
    t.true(g.paddings > 0, 'the workload wraps the ring');
    t.true(g.discards > 0);
    const base = writeImage(tmp.name('base.img'), DEVICE_LB * LB, 1000 + i);

    const fromWlog = copyImage(base, tmp.name('wlog.img'));
    await native.wlogRedo(wlog, fromWlog, { discard: 'zero' });
    const want = fs.readFileSync(fromWlog);
    t.false(want.equals(fs.readFileSync(base)), 'the workload changed the image');
    const check = (label: string, got: Buffer) => t.is(firstDiff(got, want), -1, label);

    const sorted = tmp.name('s.wdiff');
    const indexed = tmp.name('i.wdiff');
    await native.wlogToWdiff([wlog], sorted, {});
    await native.wlogToWdiff([wlog], indexed, { indexed: true });
    for (const [label, d] of [
      ['sorted', sorted],
      ['indexed', indexed],
    ]) {
      const img = copyImage(base, tmp.name(`${label}.img`));
      await native.wdiffRedo(d, img, { discard: 'zero' });
      check(`${label} wdiff redo`, fs.readFileSync(img));
      check(`${label} virtual full`, await readVirtualFull(base, [d]));
    }

    // Consecutive pieces of the same log: redone one after the other, converted together, or converted one by
    // one (sorted, indexed, sorted zstd) and merged or read as a chain.
    const parts = splitWlog(wlog, 3);
    t.is(parts.length, 3);
    const seq = copyImage(base, tmp.name('seq.img'));
    for (const p of parts) await native.wlogRedo(p, seq, { discard: 'zero' });
    check('the pieces redone in order', fs.readFileSync(seq));
    const together = tmp.name('together.wdiff');
    const conv = await native.wlogToWdiff(parts, together, {});
    t.like(conv, { beginLsid: g.beginLsid, endLsid: g.endLsid, packs: g.packs });
    t.true(sameBytes(together, sorted), 'converting the pieces together gives the very same wdiff');

    const diffs = [tmp.name('d0.wdiff'), tmp.name('d1.wdiff'), tmp.name('d2.wdiff')];
    await native.wlogToWdiff([parts[0]], diffs[0], {});
    await native.wlogToWdiff([parts[1]], diffs[1], { indexed: true });
    await native.wlogToWdiff([parts[2]], diffs[2], { compression: 'zstd' });
    const merged = tmp.name('m.wdiff');
    await native.wdiffMerge(diffs, merged, {});
    const mergedImg = copyImage(base, tmp.name('m.img'));
    await native.wdiffRedo(merged, mergedImg, { discard: 'zero' });
    check('redo of the merged wdiff', fs.readFileSync(mergedImg));
    check('virtual full over the chain', await readVirtualFull(base, diffs));
    check('virtual full over the merged wdiff', await readVirtualFull(base, [merged]));

    const cat = tmp.name('cat.img');
    const r = await runTool(['virt-full-cat', base, ...diffs, '-o', cat]);
    t.is(r.code, 0, r.stderr);
    check('walb-tool virt-full-cat', fs.readFileSync(cat));
  });
}

test('consecutive wlogs convert together only with the same uuid and no lsid gap', async (t) => {
  const wlog = tmp.name('c.wlog');
  await native.wlogGen(wlog, { pbs: 512, deviceSize: 4096, amount: 1 << 20, seed: 31 });
  const parts = splitWlog(wlog, 3);
  t.is(parts.length, 3);
  const [a, , c] = parts;
  await t.throwsAsync(native.wlogToWdiff([a, c], tmp.name('gap.wdiff'), {}), {
    code: 'INVALID_ARGUMENT',
    message: /does not follow/,
  });
  const other = tmp.name('other.wlog');
  await native.wlogGen(other, { pbs: 512, deviceSize: 4096, amount: 64 << 10, seed: 32 });
  await t.throwsAsync(native.wlogToWdiff([wlog, other], tmp.name('uuid.wdiff'), {}), {
    code: 'INVALID_ARGUMENT',
    message: /uuid/,
  });
});

test('merging wdiffs of large records (packs of up to 32 MiB, mixed raw and compressed) redoes to the wlog image', async (t) => {
  // Records of up to 4 MiB, never split: sorted packs far larger than the merge writer's unit of work, with
  // records handed over without copies and pack headers written after their data.
  const dev = 98304; // 48 MiB
  const wlog = tmp.name('big.wlog');
  await native.wlogGen(wlog, {
    pbs: 4096,
    deviceSize: dev,
    amount: 64 << 20,
    minIoSize: 1024,
    maxIoSize: 8192,
    overlapRatio: 0.7,
    discardRatio: 0.05,
    data: 'compressible',
    seed: 41,
  });
  const base = writeImage(tmp.name('big-base.img'), dev * LB, 41);
  const want = copyImage(base, tmp.name('big-wlog.img'));
  await native.wlogRedo(wlog, want, { discard: 'zero' });
  const parts = splitWlog(wlog, 3);
  const diffs = [tmp.name('b0.wdiff'), tmp.name('b1.wdiff'), tmp.name('b2.wdiff')];
  await native.wlogToWdiff([parts[0]], diffs[0], { compression: 'none', maxIoBlocks: 0 });
  await native.wlogToWdiff([parts[1]], diffs[1], { compression: 'snappy', maxIoBlocks: 0 });
  await native.wlogToWdiff([parts[2]], diffs[2], { compression: 'none', maxIoBlocks: 0, indexed: true });
  for (const [label, opts] of [
    ['raw', { compression: 'none', maxIoBlocks: 0 }],
    ['snappy', { compression: 'snappy', maxIoBlocks: 0 }],
    ['split', { compression: 'lz4' }],
  ] as const) {
    const merged = tmp.name(`big-${label}.wdiff`);
    await native.wdiffMerge(diffs, merged, opts);
    const img = copyImage(base, tmp.name(`big-${label}.img`));
    await native.wdiffRedo(merged, img, { discard: 'zero' });
    t.is(firstDiff(fs.readFileSync(img), fs.readFileSync(want)), -1, label);
    // Merging the merged wdiff alone gives it back byte for byte.
    const again = tmp.name(`big-${label}-again.wdiff`);
    await native.wdiffMerge([merged], again, opts);
    t.true(sameBytes(again, merged), `${label}: merged again`);
  }
});

const COMPRESSIONS: Compression[] = ['none', 'snappy', 'zstd', 'lz4', 'gzip', 'lzma'];

test('every compression (none, snappy, zstd, lz4, gzip, lzma) round-trips through sorted, indexed and merged wdiffs', async (t) => {
  const wlog = tmp.name('cmp.wlog');
  await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: 8192,
    amount: 1 << 20,
    maxIoSize: 32,
    data: 'compressible',
    seed: 41,
  });
  const base = writeImage(tmp.name('cmp-base.img'), 8192 * LB, 42);
  const img = copyImage(base, tmp.name('cmp-wlog.img'));
  await native.wlogRedo(wlog, img, { discard: 'zero' });
  const want = fs.readFileSync(img);
  const plain = tmp.name('plain.wdiff');
  await native.wlogToWdiff([wlog], plain, { compression: 'none' });
  for (const c of COMPRESSIONS) {
    const sorted = tmp.name(`${c}.wdiff`);
    const indexed = tmp.name(`${c}-i.wdiff`);
    const merged = tmp.name(`${c}-m.wdiff`);
    await native.wlogToWdiff([wlog], sorted, { compression: c });
    await native.wlogToWdiff([wlog], indexed, { compression: c, indexed: true });
    await native.wdiffMerge([plain], merged, { compression: c });
    for (const d of [sorted, indexed, merged]) {
      const recs = (await allRecords(d)).filter((r) => r.kind === 'normal');
      t.true(recs.length > 0);
      t.true(
        recs.every((r) => r.compression === c),
        `${c}: every record of compressible data is stored with ${c} (${d})`,
      );
      await t.notThrowsAsync(native.wdiffVerify(d));
      t.is(firstDiff(await readVirtualFull(base, [d]), want), -1, `${c}: virtual full of ${d}`);
    }
    const redone = copyImage(base, tmp.name(`${c}.img`));
    await native.wdiffRedo(sorted, redone, { discard: 'zero' });
    t.is(firstDiff(fs.readFileSync(redone), want), -1, `${c}: redo`);

    // The stored bytes are in the exact container of docs/formats.md §5.1.
    const { packs } = parseSortedWdiff(fs.readFileSync(sorted));
    const r = packs[0].records.find((x) => x.flags === 0)!;
    const size = r.blocks * LB;
    const image = want.subarray(r.address * LB, r.address * LB + size);
    if (c === 'gzip') t.true(zlib.inflateSync(r.stored).equals(image), 'gzip is a zlib (RFC 1950) stream');
    if (c === 'lzma')
      t.is(r.stored.subarray(0, 6).toString('hex'), 'fd377a585a00', 'lzma is an .xz container');
    if (c === 'zstd') t.is(r.stored.readUInt32LE(0), 0xfd2fb528, 'zstd is one zstd frame');
    if (c === 'snappy') {
      // A raw snappy block starts with the uncompressed length as a varint.
      let len = 0;
      for (let k = 0, shift = 0; ; k++, shift += 7) {
        len += (r.stored[k] & 0x7f) * 2 ** shift;
        if (!(r.stored[k] & 0x80)) break;
      }
      t.is(len, size, 'raw snappy block, no framing');
    }
  }
});

test('a merge of snappy wdiffs, into every codec, is byte for byte the merge of the same wdiffs stored uncompressed', async (t) => {
  // Overlapping writes: the newer wdiff cuts records of the older one, which are then written in parts.
  const plain: string[] = [];
  const snappy: string[] = [];
  for (const i of [0, 1]) {
    const wlog = tmp.name(`mc${i}.wlog`);
    await native.wlogGen(wlog, {
      pbs: 512,
      deviceSize: 8192,
      amount: 1 << 20,
      maxIoSize: 32,
      data: 'compressible',
      seed: 50 + i,
    });
    plain.push(tmp.name(`mc${i}-none.wdiff`));
    snappy.push(tmp.name(`mc${i}-snappy.wdiff`));
    await native.wlogToWdiff([wlog], plain[i], { compression: 'none' });
    await native.wlogToWdiff([wlog], snappy[i], { compression: 'snappy' });
  }
  for (const c of COMPRESSIONS) {
    const fromPlain = tmp.name(`mc-${c}-from-none.wdiff`);
    const fromSnappy = tmp.name(`mc-${c}-from-snappy.wdiff`);
    await native.wdiffMerge(plain, fromPlain, { compression: c });
    await native.wdiffMerge(snappy, fromSnappy, { compression: c });
    t.true(sameBytes(fromSnappy, fromPlain), `${c} merge of the snappy wdiffs`);
  }
});

test('a record that compression would not shrink is stored raw with code 0', async (t) => {
  const wlog = tmp.name('rnd.wlog');
  await native.wlogGen(wlog, { pbs: 512, deviceSize: 4096, amount: 256 << 10, data: 'random', seed: 43 });
  for (const c of ['snappy', 'lz4', 'zstd'] as const) {
    const d = tmp.name(`rnd-${c}.wdiff`);
    await native.wlogToWdiff([wlog], d, { compression: c });
    const recs = (await allRecords(d)).filter((r) => r.kind === 'normal');
    t.true(recs.length > 0);
    t.true(
      recs.every((r) => r.compression === 'none' && r.dataSize === r.blocks * LB),
      c,
    );
  }
});

test('merging picks the newer wdiff where it fully or partly overlaps the older one, and takes its uuid', async (t) => {
  const d = (seed: number, lb: number) => prngBytes(seed, lb * LB);
  const olderRecs: DiffRecordSpec[] = [
    { address: 0, blocks: 16, stored: d(1, 16) },
    { address: 32, blocks: 8, stored: d(2, 8) },
    { address: 64, blocks: 8, stored: d(3, 8) },
    { address: 90, blocks: 20, kind: 'discard' },
  ];
  const newerRecs: DiffRecordSpec[] = [
    { address: 4, blocks: 4, stored: d(4, 4) }, // strictly inside the older (0,16)
    { address: 30, blocks: 4, stored: d(5, 4) }, // over the start of (32,8)
    { address: 64, blocks: 8, kind: 'allzero' }, // exactly over (64,8)
    { address: 100, blocks: 4, stored: d(6, 4) }, // newer data inside an older discard
  ];
  const older = tmp.name('older.wdiff');
  const newer = tmp.name('newer.wdiff');
  fs.writeFileSync(older, buildSortedWdiff(prngBytes(100, 16), [olderRecs]));
  fs.writeFileSync(newer, buildSortedWdiff(prngBytes(200, 16), [newerRecs]));
  const olderIndexed = tmp.name('older-i.wdiff');
  // The same older diff as an indexed file, through a wlog holding the same writes.
  const wlog = tmp.name('older.wlog');
  fs.writeFileSync(
    wlog,
    buildWlog({ pbs: 512, salt: 1, uuid: prngBytes(100, 16), beginLsid: 0 }, [
      [
        { kind: 'normal', offset: 0, ioSize: 16, data: d(1, 16) },
        { kind: 'normal', offset: 32, ioSize: 8, data: d(2, 8) },
        { kind: 'normal', offset: 64, ioSize: 8, data: d(3, 8) },
        { kind: 'discard', offset: 90, ioSize: 20 },
      ],
    ]).bytes,
  );
  await native.wlogToWdiff([wlog], olderIndexed, { indexed: true });

  for (const first of [older, olderIndexed]) {
    const merged = tmp.name('merged.wdiff');
    await native.wdiffMerge([first, newer], merged, {});
    const recs = await allRecords(merged);
    const expected: [number, number, string][] = [
      [0, 4, 'normal'],
      [4, 4, 'normal'],
      [8, 8, 'normal'],
      [30, 4, 'normal'],
      [34, 6, 'normal'],
      [64, 8, 'allzero'],
      [90, 10, 'discard'],
      [100, 4, 'normal'],
      [104, 6, 'discard'],
    ];
    // The indexed input holds the discard as aligned pieces, so only the per-block picture is the same there.
    const perBlock = (rs: { address: number; blocks: number; kind: string }[]) => {
      const kinds: string[] = Array(128).fill('-');
      for (const r of rs) kinds.fill(r.kind[0], r.address, r.address + r.blocks);
      return kinds.join('');
    };
    if (first === older) {
      t.deepEqual(
        recs.map((r) => [r.address, r.blocks, r.kind]),
        expected,
        'the older records keep only what the newer ones do not cover',
      );
    }
    t.is(perBlock(recs), perBlock(expected.map(([address, blocks, kind]) => ({ address, blocks, kind }))));
    t.deepEqual(readWdiffHeader(merged).uuid, prngBytes(200, 16).toString('hex'), 'newest uuid');
    const base = writeImage(tmp.name('merge-base.img'), 128 * LB, 7);
    const want = fs.readFileSync(base);
    d(1, 16).copy(want, 0);
    d(4, 4).copy(want, 4 * LB);
    d(2, 8).copy(want, 32 * LB);
    d(5, 4).copy(want, 30 * LB);
    want.fill(0, 64 * LB, 72 * LB);
    want.fill(0, 90 * LB, 110 * LB);
    d(6, 4).copy(want, 100 * LB);
    t.is(firstDiff(await readVirtualFull(base, [merged]), want), -1, 'merged');
    t.is(firstDiff(await readVirtualFull(base, [first, newer]), want), -1, 'chain');
  }
});

test('the bounded-memory conversion (small memory limit, spilling) gives the same wdiff as the in-memory one', async (t) => {
  // The in-memory diff of a sorted conversion refers to the data in the wlog and costs ~128 bytes a record, so
  // a 32 KiB limit is what makes this 4 MiB workload (~1000 records live) spill several times.
  const wlog = tmp.name('spill.wlog');
  await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: 16384,
    amount: 4 << 20,
    maxIoSize: 16,
    overlapRatio: 0.5,
    discardRatio: 0.05,
    allZeroRatio: 0.05,
    seed: 51,
  });
  const inMemory = tmp.name('mem.wdiff');
  const spilled = tmp.name('spill.wdiff');
  const m = await native.wlogToWdiff([wlog], inMemory, {});
  t.is(m.spills, 0);
  const spillDir = tmp.name('spills');
  fs.mkdirSync(spillDir);
  const s = await native.wlogToWdiff([wlog], spilled, { memoryLimit: 32 << 10, tempDir: spillDir });
  t.true(s.spills > 1, `spilled ${s.spills} times`);
  t.deepEqual(fs.readdirSync(spillDir), [], 'the spill files are removed');
  t.deepEqual(await allRecords(spilled), await allRecords(inMemory));
  t.true(sameBytes(spilled, inMemory), 'byte for byte the same file (docs/formats.md §8j)');
  t.like(s, {
    records: m.records,
    dataBlocks: m.dataBlocks,
    allZeroBlocks: m.allZeroBlocks,
    discardBlocks: m.discardBlocks,
  });
});

test('no record is longer than maxIoBlocks after conversion (sorted, indexed) or merge', async (t) => {
  const wlog = tmp.name('maxio.wlog');
  await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: 8192,
    amount: 1 << 20,
    minIoSize: 8,
    maxIoSize: 64,
    discardRatio: 0.1,
    allZeroRatio: 0.1,
    seed: 61,
  });
  const base = writeImage(tmp.name('maxio.img'), 8192 * LB, 62);
  const img = copyImage(base, tmp.name('maxio-wlog.img'));
  await native.wlogRedo(wlog, img, { discard: 'zero' });
  const want = fs.readFileSync(img);

  const plain = tmp.name('maxio-plain.wdiff');
  await native.wlogToWdiff([wlog], plain, { maxIoBlocks: 0 });
  t.true(
    (await allRecords(plain)).some((r) => r.blocks > 16),
    'without a limit, longer records exist',
  );

  const cases: [string, number, (f: string) => Promise<unknown>][] = [
    ['sorted 16', 16, (f) => native.wlogToWdiff([wlog], f, { maxIoBlocks: 16 })],
    [
      'indexed 24 (aligned pieces of at most 16)',
      16,
      (f) => native.wlogToWdiff([wlog], f, { maxIoBlocks: 24, indexed: true }),
    ],
    ['merge 7', 7, (f) => native.wdiffMerge([plain], f, { maxIoBlocks: 7 })],
  ];
  for (const [label, max, make] of cases) {
    const f = tmp.name('maxio.wdiff');
    await make(f);
    const recs = await allRecords(f);
    t.true(
      recs.every((r) => r.blocks <= max),
      `${label}: longest record ${Math.max(...recs.map((r) => r.blocks))}`,
    );
    t.true(
      recs.some((r) => r.blocks === max),
      `${label}: records are cut to exactly the limit`,
    );
    t.is(firstDiff(await readVirtualFull(base, [f]), want), -1, label);
  }
});
