// Sizes taken from a corrupt file are checked before anything is allocated from them. The wlog and wdiff readers
// size buffers from on-disk fields (a sorted record's io_blocks, an indexed image's orig_blocks and data_size, a
// logpack's total_io_size); each such field is checked against its limits first (docs/formats.md §5.2, §5.3,
// §2.2, §4), so a file whose checksums were made to match its bad fields is refused without the reader ever
// holding more than one record's worth of memory. Files are written by our own tools, then a field is changed
// and its block re-checksummed, so that the size check is what fires. Each call runs in a process of its own
// (test/memory-probe.ts) whose peak resident set must not grow by more than the given limit; the cases are
// built so that allocating what the field claims would exceed it.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { native } from '../../src/native';
import {
  LB,
  U64_MAX,
  buildSortedWdiff,
  parseIndexedWdiff,
  parseSortedWdiff,
  parseWlog,
  reseal,
  type DiffRecordSpec,
} from '../format-oracle';
import { expectToolFailure } from '../processes';
import { prngBytes, tempArea, writeImage } from '../temp-files';
import { probe, type ProbeCall, type ProbeResult } from '../memory-probe';

const tmp = tempArea('corrupt-sizes');
test.after.always(() => tmp.cleanup());

const MiB = 1 << 20;
const DEVICE_LB = 131072; // 64 MiB

// ------------------------------------------------------------------------------------------------ fixtures

interface Fixtures {
  wlog4k: Buffer; // pbs 4096
  sortedRaw: Buffer; // sorted, stored uncompressed (random data): one pack
  indexedRaw: Buffer;
  indexedSnappy: Buffer;
}
let fx: Fixtures;

test.before(async () => {
  const gen = {
    deviceSize: DEVICE_LB,
    amount: MiB,
    minIoSize: 2,
    maxIoSize: 32,
    discardRatio: 0,
    allZeroRatio: 0,
  };
  const raw = tmp.name('raw.wlog');
  await native.wlogGen(raw, { ...gen, data: 'random', seed: 7, salt: 0x1234 });
  const cmp = tmp.name('cmp.wlog');
  await native.wlogGen(cmp, { ...gen, data: 'compressible', seed: 8, salt: 0x1234 });
  const w4k = tmp.name('4k.wlog');
  await native.wlogGen(w4k, { ...gen, pbs: 4096, data: 'random', seed: 9, salt: 0x4321 });
  const out = (base: string) => tmp.name(base);
  const sortedRaw = out('raw.wdiff');
  await native.wlogToWdiff([raw], sortedRaw, { compression: 'none' });
  const indexedRaw = out('raw-i.wdiff');
  await native.wlogToWdiff([raw], indexedRaw, { compression: 'none', indexed: true });
  const indexedSnappy = out('cmp-i.wdiff');
  await native.wlogToWdiff([cmp], indexedSnappy, { compression: 'snappy', indexed: true });
  fx = {
    wlog4k: fs.readFileSync(w4k),
    sortedRaw: fs.readFileSync(sortedRaw),
    indexedRaw: fs.readFileSync(indexedRaw),
    indexedSnappy: fs.readFileSync(indexedSnappy),
  };
});

function mutated(fixture: Buffer, name: string, mutate: (b: Buffer) => void): string {
  const b = Buffer.from(fixture);
  mutate(b);
  const file = tmp.name(name);
  fs.writeFileSync(file, b);
  return file;
}

/** Runs `call` in a process of its own; it must end with `code` and a peak resident set at most `limit` higher. */
async function bounded(
  t: ExecutionContext,
  call: ProbeCall,
  code: string,
  message?: RegExp,
  limit = 256 * MiB,
): Promise<ProbeResult> {
  const r = await probe(call);
  t.is(r.code, code, `${call[0]}: ${r.message}`);
  if (message) t.regex(r.message, message, call[0]);
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  t.true(
    r.peakAfter - r.peakBefore <= limit,
    `${call[0]}: peak resident set grew by ${mib(r.peakAfter - r.peakBefore)} (limit ${mib(limit)})`,
  );
  t.true(
    r.rssAfter - r.rssBefore <= limit,
    `${call[0]}: resident set grew by ${mib(r.rssAfter - r.rssBefore)} (limit ${mib(limit)})`,
  );
  return r;
}

/** Every reader of a wdiff refuses it within the memory limit: verify, redo, virtual full, walb-tool verify. */
async function wdiffRefused(
  t: ExecutionContext,
  file: string,
  code: string,
  message: RegExp,
  opts: { at?: number; vfRange: [number, number] },
): Promise<void> {
  const r = await bounded(t, ['wdiffVerify', file], code, message);
  t.true(r.message.includes(file), `the message names the file: ${r.message}`);
  if (opts.at !== undefined)
    t.true(r.message.includes(`at byte ${opts.at}`), `names byte ${opts.at}: ${r.message}`);
  await bounded(t, ['wdiffRedo', file, writeImage(tmp.name('redo.img'), DEVICE_LB * LB)], code, message);
  const base = writeImage(tmp.name('base.img'), DEVICE_LB * LB);
  await bounded(t, ['virtualFull', base, [file], [opts.vfRange]], code, message);
  await expectToolFailure(t, ['wdiff', 'verify', file], { code, file, message });
}

const sortedPack = (b: Buffer) => {
  const s = parseSortedWdiff(b);
  return s.packs[s.packs.length - 1];
};

// ------------------------------------------------------------------------------------------------ sorted

test('the fixtures are valid and shaped as the cases need', async (t) => {
  const s = parseSortedWdiff(fx.sortedRaw);
  t.is(s.packs.length, 1, 'the sorted fixture is one pack');
  t.true(s.packs[0].nRecords >= 32);
  t.true(s.packs[0].records.every((r) => r.flags === 0 && r.compression === 0));
  for (const f of [fx.sortedRaw, fx.indexedRaw, fx.indexedSnappy]) {
    const file = tmp.name('ok.wdiff');
    fs.writeFileSync(file, f);
    t.like(await native.wdiffVerify(file), { discardBlocks: 0 });
  }
  const w = tmp.name('ok.wlog');
  fs.writeFileSync(w, fx.wlog4k);
  t.like(await native.wlogVerify(w), { header: { pbs: 4096 } });
});

for (const blocks of [1 << 21, 0xffffffff]) {
  test(`sorted wdiff record with an absurd io_blocks (${blocks}) is rejected before allocating`, async (t) => {
    // The last record, so that no later record overlaps it: the size check is the only one that can fire.
    const p = sortedPack(fx.sortedRaw);
    const r = p.records[p.records.length - 1];
    const file = mutated(fx.sortedRaw, 'absurd-blocks.wdiff', (b) => {
      b.writeUInt32LE(blocks, r.at + 8);
      reseal(b.subarray(p.at, p.at + 4096), 0);
    });
    await wdiffRefused(t, file, 'CORRUPTION', /record of \d+ blocks exceeds the limit of 65536/, {
      at: r.at,
      vfRange: [r.address * LB, 4096],
    });
  });
}

test('sorted wdiff record whose data_size exceeds the most its IO can take is rejected', async (t) => {
  const p = sortedPack(fx.sortedRaw);
  const r = p.records.find((x) => x.blocks >= 2)!;
  const file = mutated(fx.sortedRaw, 'data-size.wdiff', (b) => {
    b.writeUInt32LE(1, r.at + 8); // stored raw, so data_size may be at most 512
    reseal(b.subarray(p.at, p.at + 4096), 0);
  });
  await wdiffRefused(t, file, 'CORRUPTION', /data_size \d+ exceeds 512/, {
    at: r.at,
    vfRange: [r.address * LB, 4096],
  });
});

test('sorted wdiff pack whose records claim 32 MiB each is refused after decoding one record, not the whole pack', async (t) => {
  // Sixteen records claim the largest size allowed (65536 LB); all records are moved apart so that none overlap.
  // Decoding the whole pack up front would allocate 16 x 32 MiB before finding that the first record is bad.
  const p = sortedPack(fx.sortedRaw);
  const file = mutated(fx.sortedRaw, 'big-claims.wdiff', (b) => {
    p.records.forEach((r, k) => {
      b.writeBigUInt64LE(BigInt(k) * 65536n, r.at);
      if (k < 16) b.writeUInt32LE(65536, r.at + 8);
    });
    reseal(b.subarray(p.at, p.at + 4096), 0);
  });
  await wdiffRefused(t, file, 'CORRUPTION', /cannot decompress \(none\)/, { vfRange: [0, 4096] });
});

test('sorted wdiff pack that decodes to 20 x 32 MiB (valid, zlib) is read in bounded memory', async (t) => {
  const pattern = Buffer.alloc(32 * MiB, 'walb bounded ');
  const stored = zlib.deflateSync(pattern, { level: 9 });
  const recs: DiffRecordSpec[] = [];
  for (let k = 0; k < 20; k++) recs.push({ address: k * 65536, blocks: 65536, compression: 1, stored });
  const file = tmp.name('big-valid.wdiff');
  fs.writeFileSync(file, buildSortedWdiff(prngBytes(1, 16), [recs]));
  const v = await bounded(t, ['wdiffVerify', file], 'ok');
  t.like(v.result, { records: 20, dataBlocks: 20 * 65536 });
  const base = writeImage(tmp.name('big-base.img'), 20 * 32 * MiB);
  const reads: [number, number][] = [0, 7, 19].map((k) => [(k * 65536 + 100) * LB, 4096]);
  const r = await bounded(t, ['virtualFull', base, [file], reads], 'ok');
  for (const [i, [off]] of reads.entries()) {
    const want = pattern.subarray(off % (32 * MiB), (off % (32 * MiB)) + 4096).toString('hex');
    t.is((r.result as string[])[i], want, `virtual full read at ${off}`);
  }
});

test('sorted wdiff pack whose total_size runs past the end of the file is refused before allocating', async (t) => {
  const p = sortedPack(fx.sortedRaw);
  const file = mutated(fx.sortedRaw, 'past-eof.wdiff', (b) => {
    b.writeUInt32LE(32 * MiB, p.at + 8);
    reseal(b.subarray(p.at, p.at + 4096), 0);
  });
  const r = await bounded(t, ['wdiffVerify', file], 'TRUNCATED', /file ends inside pack data/, 16 * MiB);
  t.true(r.message.includes(`at byte ${p.at + 4096}`), r.message);
});

// ------------------------------------------------------------------------------------------------ indexed

function indexRecordMutated(
  fixture: Buffer,
  name: string,
  k: number,
  mutate: (b: Buffer, at: number) => void,
) {
  const I = parseIndexedWdiff(fixture);
  const at = I.records[k].at;
  return mutated(fixture, name, (b) => {
    mutate(b, at);
    reseal(b.subarray(at, at + 48), 44);
  });
}

for (const orig of [65537, 1 << 21]) {
  test(`indexed wdiff record with an absurd orig_blocks (${orig}) is rejected before allocating`, async (t) => {
    const I = parseIndexedWdiff(fx.indexedRaw);
    const k = I.records.findIndex((r) => r.flags === 0);
    const file = indexRecordMutated(fx.indexedRaw, 'absurd-orig.wdiff', k, (b, at) =>
      b.writeUInt32LE(orig, at + 32),
    );
    await wdiffRefused(t, file, 'CORRUPTION', /image of \d+ blocks exceeds the limit of 65536/, {
      at: I.records[k].at,
      vfRange: [I.records[k].address * LB, 4096],
    });
  });
}

test('indexed wdiff record whose data_offset + data_size wraps past 2^64 is rejected before allocating', async (t) => {
  // data_offset + data_size computed in 64 bits lands at 64, inside the data area; the image would be 1 GiB.
  const I = parseIndexedWdiff(fx.indexedRaw);
  const k = I.records.findIndex((r) => r.flags === 0);
  const file = indexRecordMutated(fx.indexedRaw, 'wrap.wdiff', k, (b, at) => {
    b.writeBigUInt64LE(U64_MAX + 1n - (1n << 30n) + 64n, at + 16);
    b.writeUInt32LE(1 << 30, at + 24);
  });
  await wdiffRefused(t, file, 'CORRUPTION', /image outside the data area/, {
    at: I.records[k].at,
    vfRange: [I.records[k].address * LB, 4096],
  });
});

test('indexed wdiff record whose data_size exceeds the most its image can take is rejected', async (t) => {
  const I = parseIndexedWdiff(fx.indexedRaw);
  const k = I.records.findIndex(
    (r) => r.flags === 0 && r.dataOffset + r.dataSize + LB <= I.trailer.indexOffset,
  );
  const r = I.records[k];
  const file = indexRecordMutated(fx.indexedRaw, 'image-size.wdiff', k, (b, at) =>
    b.writeUInt32LE(r.dataSize + LB, at + 24),
  );
  await wdiffRefused(
    t,
    file,
    'CORRUPTION',
    new RegExp(`data_size ${r.dataSize + LB} exceeds ${r.dataSize}`),
    {
      at: r.at,
      vfRange: [r.address * LB, 4096],
    },
  );
});

test('indexed wdiff record that shares an image but claims a larger one is checked on its own claims', async (t) => {
  // Records cut from one write share its image. A record that names the same image with another size must not
  // be served from the image already decoded for its neighbour (its range would then run past that buffer).
  const I = parseIndexedWdiff(fx.indexedSnappy);
  const k = I.records.findIndex(
    (r, i) =>
      i > 0 && r.flags === 0 && I.records[i - 1].flags === 0 && I.records[i - 1].dataOffset === r.dataOffset,
  );
  t.true(k > 0, 'the fixture has records sharing an image');
  const r = I.records[k];
  const file = indexRecordMutated(fx.indexedSnappy, 'shared.wdiff', k, (b, at) => {
    b.writeUInt32LE(r.origBlocks + 64, at + 28); // io_offset: past the real image
    b.writeUInt32LE(r.origBlocks + 64 + r.blocks, at + 32); // orig_blocks: claims a larger one
  });
  await wdiffRefused(t, file, 'CORRUPTION', /cannot decompress \(snappy\)/, {
    at: r.dataOffset,
    vfRange: [I.records[k - 1].address * LB, (r.address - I.records[k - 1].address + r.blocks) * LB],
  });
});

// ------------------------------------------------------------------------------------------------ wlog

test('logpack whose total_io_size runs past the end of the wlog is rejected before allocating', async (t) => {
  // The last pack is rewritten as eight normal records of 65535 LB (the most a normal record may have, docs/formats.md
  // §2.2) filling total_io_size 65535 with pbs 4096: 256 MiB of data the file does not hold.
  const w = parseWlog(fx.wlog4k);
  const P = w.packs[w.packs.length - 1];
  const sizes = [65535, 65535, 65535, 65535, 65535, 65535, 65535, 65528];
  const file = mutated(fx.wlog4k, 'past-eof.wlog', (b) => {
    const h = b.subarray(P.at, P.at + 4096);
    h.fill(0, 4);
    h.writeUInt16LE(3, 4); // sector_type
    h.writeUInt16LE(65535, 6); // total_io_size
    h.writeBigUInt64LE(BigInt(P.lsid), 8);
    h.writeUInt16LE(sizes.length, 16);
    let used = 0;
    sizes.forEach((lb, i) => {
      const at = 24 + 32 * i;
      h.writeUInt32LE(1, at + 4); // EXIST
      h.writeBigUInt64LE(BigInt(i) * 65536n, at + 8);
      h.writeUInt32LE(lb, at + 16);
      h.writeUInt16LE(1 + used, at + 20);
      h.writeBigUInt64LE(BigInt(P.lsid + 1 + used), at + 24);
      used += Math.ceil((lb * LB) / 4096);
    });
    t.is(used, 65535);
    reseal(h, 0, w.salt);
  });
  const message = /file ends inside logpack data/;
  const r = await bounded(t, ['wlogVerify', file], 'TRUNCATED', message, 128 * MiB);
  t.true(r.message.includes(file) && r.message.includes(`at byte ${P.dataAt}`), r.message);
  const outDir = tmp.name('out');
  fs.mkdirSync(outDir);
  await bounded(t, ['wlogToWdiff', file, path.join(outDir, 'x.wdiff')], 'TRUNCATED', message, 128 * MiB);
  t.deepEqual(fs.readdirSync(outDir), [], 'a failed conversion leaves no output');
  await expectToolFailure(t, ['wlog', 'verify', file], { code: 'TRUNCATED', file, message });
});
