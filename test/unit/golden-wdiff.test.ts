// Golden vectors for wdiff files (docs/formats.md §5). Files the addon writes are taken apart in plain JS by its
// offsets (format-oracle parseSortedWdiff / parseIndexedWdiff: file header checksum @0, version @4, type @6, uuid @16;
// sorted pack header checksum @0, n_records @4, flags @6, total_size @8, records of 32 bytes from 16 with
// io_address @0, io_blocks @8, flags @12, compression @13, data_offset @16, data_size @20, checksum @24; indexed
// records of 48 bytes with data_offset @16, data_size @24, io_offset @28, orig_blocks @32, io_checksum @40,
// rec_checksum @44; trailer of 24 bytes with index_offset @0, n_records @8, n_data @12, checksum @20). Hand-built
// files (format-oracle buildSortedWdiff etc., the same offsets written with Buffer writes and checksummed by the
// plain-JS csum) prove that we read files we did not write.
import test from 'ava';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { native, readWdiffHeader } from '../../src/native';
import { allRecords, readVirtualFull } from '../addon-readers';
import {
  LB,
  buildEndPack,
  buildIndexRecord,
  buildIndexTrailer,
  buildSortedWdiff,
  buildWdiffHeader,
  buildWlog,
  csum,
  parseIndexedWdiff,
  parseSortedWdiff,
  parseWlog,
  uuidBytes,
} from '../format-oracle';
import { runTool } from '../processes';
import { firstDiff, prngBytes, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('golden-wdiff');
test.after.always(() => tmp.cleanup());

const SPEC_UUID = '3f2a9c41d8b7e650a1c4f0e3925d7b18';

test('the wdiff file header worked example of docs/formats.md §0.2 checksums to 0x7110fbb4 (sorted) and 0x710ffbb4 (indexed)', async (t) => {
  const sorted = buildWdiffHeader(0, uuidBytes(SPEC_UUID));
  t.is(sorted.toString('hex'), 'b4fb1071' + '02000000' + '00'.repeat(8) + SPEC_UUID);
  t.is(sorted.readUInt32LE(0), 0x7110fbb4);
  t.is(buildWdiffHeader(1, uuidBytes(SPEC_UUID)).readUInt32LE(0), 0x710ffbb4);
  t.is(native.checksum(sorted, 0), 0);

  // That header plus an end pack is a valid, empty sorted wdiff.
  const file = tmp.name('empty.wdiff');
  fs.writeFileSync(file, Buffer.concat([sorted, buildEndPack()]));
  t.deepEqual(readWdiffHeader(file), { type: 'sorted', uuid: SPEC_UUID });
  t.like(await native.wdiffVerify(file), { records: 0 });
  const r = await runTool(['wdiff', 'verify', file]);
  t.is(r.code, 0, r.stderr);
});

/** A random workload, the image it leaves on a zeroed device (discards zeroed) and its parsed bytes. */
async function workload(seed: number) {
  const wlog = tmp.name('w.wlog');
  const g = await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: 8192,
    amount: 1 << 20,
    minIoSize: 1,
    maxIoSize: 16,
    discardRatio: 0.1,
    allZeroRatio: 0.2,
    overlapRatio: 0.3,
    seed,
  });
  const image = writeImage(tmp.name('w.img'), 8192 * LB);
  await native.wlogRedo(wlog, image, { discard: 'zero' });
  const bytes = fs.readFileSync(wlog);
  return { wlog, g, image: fs.readFileSync(image), parsed: parseWlog(bytes), bytes };
}

test('a sorted wdiff written by wlogToWdiff is laid out as docs/formats.md §5.1-5.2 say', async (t) => {
  const w = await workload(21);
  const file = tmp.name('sorted.wdiff');
  const stats = await native.wlogToWdiff([w.wlog], file, { compression: 'none' });
  const b = fs.readFileSync(file);
  t.is(csum(b.subarray(0, 32), 0), 0, 'file header self-checksum');
  t.is(b.readUInt16LE(4), 2, 'version @4');
  t.is(b.readUInt8(6), 0, 'type @6 is sorted');
  t.true(
    b.subarray(7, 16).every((x) => x === 0),
    'reserved 7..15 zero',
  );
  t.is(b.subarray(16, 32).toString('hex'), w.parsed.uuid, 'uuid @16 from the wlog');

  const { packs, endPackAt } = parseSortedWdiff(b);
  t.true(packs.length >= 2, 'the workload needs several packs');
  const problems: string[] = [];
  const bad = (s: string) => problems.length < 20 && problems.push(s);
  let lastEnd = 0;
  let records = 0;
  let dataBlocks = 0;
  let zeroBlocks = 0;
  let discardBlocks = 0;
  packs.forEach((p, pi) => {
    const at = `pack ${pi} at byte ${p.at}`;
    if (csum(b.subarray(p.at, p.at + 4096), 0) !== 0) bad(`${at}: header does not self-sum to 0`);
    if (p.nRecords < 1 || p.nRecords > 127) bad(`${at}: n_records ${p.nRecords}`);
    if (pi < packs.length - 1 && p.nRecords !== 127) bad(`${at}: a pack before the last is not full`);
    if (p.flags !== 0 || p.reserved0 !== 0 || p.reserved1 !== 0) bad(`${at}: flags/reserved not 0`);
    if (!b.subarray(p.at + 16 + 32 * p.nRecords, p.at + 4096).every((x) => x === 0))
      bad(`${at}: unused slots`);
    let off = 0;
    for (const r of p.records) {
      const rat = `${at} record at ${r.address}`;
      records++;
      if (r.address < lastEnd) bad(`${rat}: not sorted or overlapping`);
      lastEnd = r.address + r.blocks;
      if (r.blocks < 1 || r.blocks > 2048) bad(`${rat}: io_blocks ${r.blocks}`);
      if (r.dataOffset !== off) bad(`${rat}: data_offset ${r.dataOffset}, expected ${off}`);
      if (r.reserved1 !== 0 || r.reserved2 !== 0) bad(`${rat}: reserved not 0`);
      if (r.compression !== 0) bad(`${rat}: compression ${r.compression} with 'none'`);
      const want = w.image.subarray(r.address * LB, (r.address + r.blocks) * LB);
      if (r.flags === 0) {
        dataBlocks += r.blocks;
        if (r.dataSize !== r.blocks * LB) bad(`${rat}: data_size ${r.dataSize}`);
        if (r.checksum !== csum(r.stored, 0)) bad(`${rat}: data checksum`);
        if (!r.stored.equals(want)) bad(`${rat}: data differs from the image`);
        if (r.stored.every((x) => x === 0)) bad(`${rat}: an all-zero write stored as normal`);
      } else if (r.flags === 2 || r.flags === 4) {
        if (r.flags === 2) zeroBlocks += r.blocks;
        else discardBlocks += r.blocks;
        if (r.dataSize !== 0 || r.checksum !== 0) bad(`${rat}: all-zero/discard record with data`);
        if (!want.every((x) => x === 0)) bad(`${rat}: image not zero under an all-zero/discard record`);
      } else {
        bad(`${rat}: flags ${r.flags}`);
      }
      off += r.dataSize;
    }
    if (p.totalSize !== off) bad(`${at}: total_size ${p.totalSize}, records hold ${off}`);
  });
  t.deepEqual(problems, []);
  t.is(endPackAt, b.length - 4096, 'the file ends with the end pack');
  t.is(
    firstDiff(b.subarray(endPackAt), buildEndPack()),
    -1,
    'end pack: flags 0x01, the rest zero but the checksum',
  );
  t.like(stats, { records, dataBlocks, allZeroBlocks: zeroBlocks, discardBlocks, fileBytes: b.length });
  t.true(zeroBlocks > 0 && discardBlocks > 0);
});

test('an indexed wdiff written by wlogToWdiff is laid out as docs/formats.md §5.3 says', async (t) => {
  const w = await workload(22);
  const file = tmp.name('indexed.wdiff');
  const stats = await native.wlogToWdiff([w.wlog], file, {
    compression: 'none',
    indexed: true,
    maxIoBlocks: 12,
  });
  const b = fs.readFileSync(file);
  t.is(csum(b.subarray(0, 32), 0), 0);
  t.is(b.readUInt8(6), 1, 'type @6 is indexed');
  t.is(b.subarray(16, 32).toString('hex'), w.parsed.uuid);

  // Every log IO but padding is handed to the writer; each non-zero write is appended once as an image.
  const ios = w.parsed.packs.flatMap((p) => p.records).filter((r) => r.flags !== 3);
  const images = ios.filter(
    (r) => r.flags === 1 && !w.bytes.subarray(r.dataAt, r.dataAt + r.ioSize * LB).every((x) => x === 0),
  );
  const dataEnd = 32 + images.reduce((n, r) => n + r.ioSize * LB, 0);
  const { trailer, records } = parseIndexedWdiff(b);
  t.is(csum(b.subarray(trailer.at), 0), 0, 'trailer self-checksum');
  t.is(trailer.reserved, 0);
  t.is(trailer.indexOffset % 8, 0, 'index starts at a multiple of 8');
  t.is(trailer.indexOffset, Math.ceil(dataEnd / 8) * 8);
  t.true(
    b.subarray(dataEnd, trailer.indexOffset).every((x) => x === 0),
    '0-7 zero bytes before the index',
  );
  t.is((b.length - 24 - trailer.indexOffset) % 48, 0);
  t.is(trailer.nRecords, records.length);
  t.is(trailer.nData, ios.length, 'n_data counts every record given to the writer');

  const problems: string[] = [];
  const bad = (s: string) => problems.length < 20 && problems.push(s);
  let lastEnd = 0;
  for (const r of records) {
    const at = `index record at byte ${r.at} (address ${r.address})`;
    if (csum(b.subarray(r.at, r.at + 48), 0) !== 0) bad(`${at}: rec_checksum does not self-sum to 0`);
    if (r.address < lastEnd) bad(`${at}: not sorted or overlapping`);
    lastEnd = r.address + r.blocks;
    if (r.blocks < 1 || (r.blocks & (r.blocks - 1)) !== 0)
      bad(`${at}: io_blocks ${r.blocks} not a power of 2`);
    if (r.address % r.blocks !== 0) bad(`${at}: io_address not a multiple of io_blocks`);
    if (r.blocks > 8) bad(`${at}: io_blocks above the largest power of 2 <= maxIoBlocks 12`);
    if (r.reserved1 !== 0 || r.reserved2 !== 0) bad(`${at}: reserved not 0`);
    const want = w.image.subarray(r.address * LB, (r.address + r.blocks) * LB);
    if (r.flags === 0) {
      if (r.ioOffset + r.blocks > r.origBlocks) bad(`${at}: range beyond its image`);
      if (r.dataOffset < 32 || r.dataOffset + r.dataSize > dataEnd) bad(`${at}: image outside the data area`);
      if (r.dataSize !== r.origBlocks * LB) bad(`${at}: data_size ${r.dataSize} with 'none'`);
      const stored = b.subarray(r.dataOffset, r.dataOffset + r.dataSize);
      if (csum(stored, 0) !== r.ioChecksum) bad(`${at}: io_checksum`);
      const slice = stored.subarray(r.ioOffset * LB, (r.ioOffset + r.blocks) * LB);
      if (!slice.equals(want)) bad(`${at}: data differs from the image`);
    } else if (r.flags === 2 || r.flags === 4) {
      if (r.dataSize !== 0 || r.origBlocks !== 0 || r.compression !== 0)
        bad(`${at}: no-data record with data`);
      if (!want.every((x) => x === 0)) bad(`${at}: image not zero`);
    } else {
      bad(`${at}: flags ${r.flags}`);
    }
  }
  t.deepEqual(problems, []);
  t.true(
    records.some((r) => r.ioOffset > 0),
    'some records point into the middle of their image',
  );
  t.like(stats, { records: records.length, fileBytes: b.length });
});

test('docs/formats.md §5.3 example: an indexed write (6, 20) is split into (6,2) (8,8) (16,8) (24,2) sharing one image', async (t) => {
  const data = prngBytes(6, 20 * LB);
  const wlog = tmp.name('split.wlog');
  fs.writeFileSync(
    wlog,
    buildWlog({ pbs: 512, salt: 3, uuid: prngBytes(7, 16), beginLsid: 0 }, [
      [{ kind: 'normal', offset: 6, ioSize: 20, data }],
    ]).bytes,
  );
  const file = tmp.name('split.wdiff');
  await native.wlogToWdiff([wlog], file, { compression: 'none', indexed: true });
  const b = fs.readFileSync(file);
  const { trailer, records } = parseIndexedWdiff(b);
  t.deepEqual(
    records.map((r) => [r.address, r.blocks, r.ioOffset, r.origBlocks, r.dataOffset, r.dataSize]),
    [
      [6, 2, 0, 20, 32, 10240],
      [8, 8, 2, 20, 32, 10240],
      [16, 8, 10, 20, 32, 10240],
      [24, 2, 18, 20, 32, 10240],
    ],
  );
  t.true(records.every((r) => r.ioChecksum === csum(data, 0)));
  t.is(trailer.indexOffset, 32 + 10240);
  t.like(trailer, { nRecords: 4, nData: 1 });
});

test('the pieces of an indexed discard and all-zero write record their offset inside the original IO, as WalB writes them', async (t) => {
  const wlog = tmp.name('nodata-split.wlog');
  fs.writeFileSync(
    wlog,
    buildWlog({ pbs: 512, salt: 3, uuid: prngBytes(7, 16), beginLsid: 0 }, [
      [
        { kind: 'discard', offset: 6, ioSize: 20 },
        { kind: 'normal', offset: 38, ioSize: 20, data: Buffer.alloc(20 * LB) },
      ],
    ]).bytes,
  );
  const file = tmp.name('nodata-split.wdiff');
  await native.wlogToWdiff([wlog], file, { indexed: true });
  const { records } = parseIndexedWdiff(fs.readFileSync(file));
  t.deepEqual(
    records.map((r) => [r.address, r.blocks, r.flags, r.ioOffset, r.origBlocks, r.dataSize]),
    [
      [6, 2, 4, 0, 0, 0],
      [8, 8, 4, 2, 0, 0],
      [16, 8, 4, 10, 0, 0],
      [24, 2, 4, 18, 0, 0],
      [38, 2, 2, 0, 0, 0],
      [40, 8, 2, 2, 0, 0],
      [48, 8, 2, 10, 0, 0],
      [56, 2, 2, 18, 0, 0],
    ],
  );
});

test('docs/formats.md §5.4 example: a sorted record (100, 5000) is cut into (100,2048) (2148,2048) (4196,904)', async (t) => {
  const data = prngBytes(8, 5000 * LB);
  const wlog = tmp.name('cut.wlog');
  fs.writeFileSync(
    wlog,
    buildWlog({ pbs: 512, salt: 3, uuid: prngBytes(7, 16), beginLsid: 0 }, [
      [{ kind: 'normal', offset: 100, ioSize: 5000, data }],
    ]).bytes,
  );
  const file = tmp.name('cut.wdiff');
  await native.wlogToWdiff([wlog], file, {});
  const recs = await allRecords(file);
  t.deepEqual(
    recs.map((r) => [r.address, r.blocks, r.kind]),
    [
      [100, 2048, 'normal'],
      [2148, 2048, 'normal'],
      [4196, 904, 'normal'],
    ],
  );
  const base = writeImage(tmp.name('cut.img'), 6000 * LB);
  const img = await readVirtualFull(base, [file]);
  t.is(firstDiff(img.subarray(100 * LB, 5100 * LB), data), -1);
});

test('in an indexed wdiff a later overlapping write only edits the index; the older image stays', async (t) => {
  const a = prngBytes(10, 16 * LB);
  const bData = prngBytes(11, 4 * LB);
  const wlog = tmp.name('edit.wlog');
  fs.writeFileSync(
    wlog,
    buildWlog({ pbs: 512, salt: 9, uuid: Buffer.alloc(16), beginLsid: 0 }, [
      [{ kind: 'normal', offset: 0, ioSize: 16, data: a }],
      [{ kind: 'normal', offset: 4, ioSize: 4, data: bData }],
    ]).bytes,
  );
  const file = tmp.name('edit.wdiff');
  await native.wlogToWdiff([wlog], file, { compression: 'none', indexed: true });
  const b = fs.readFileSync(file);
  const { trailer, records } = parseIndexedWdiff(b);
  t.deepEqual(
    records.map((r) => [r.address, r.blocks, r.dataOffset, r.ioOffset, r.origBlocks]),
    [
      [0, 4, 32, 0, 16],
      [4, 4, 32 + 16 * LB, 0, 4],
      [8, 8, 32, 8, 16],
    ],
  );
  t.true(b.subarray(32, 32 + 16 * LB).equals(a), 'the first image is whole, its middle now dead');
  t.true(b.subarray(32 + 16 * LB, 32 + 20 * LB).equals(bData));
  t.like(trailer, { indexOffset: 32 + 20 * LB, nRecords: 3, nData: 2 });
});

test('a hand-built minimal sorted wdiff (header, one pack with one uncompressed record, end pack) verifies and redoes', async (t) => {
  const data = prngBytes(12, 2 * LB);
  const bytes = buildSortedWdiff(uuidBytes(SPEC_UUID), [[{ address: 16, blocks: 2, stored: data }]]);
  t.is(bytes.length, 32 + 4096 + 1024 + 4096);
  const file = tmp.name('minimal.wdiff');
  fs.writeFileSync(file, bytes);

  const v = await runTool(['wdiff', 'verify', file, '--json']);
  t.is(v.code, 0, v.stderr);
  t.like(JSON.parse(v.stdout), { ok: true, records: 1, dataBlocks: 2, allZeroBlocks: 0, discardBlocks: 0 });
  t.deepEqual(await allRecords(file), [
    {
      address: 16,
      blocks: 2,
      kind: 'normal',
      compression: 'none',
      dataOffset: 32 + 4096,
      dataSize: 1024,
      ioOffset: 0,
      origBlocks: 0,
    },
  ]);

  const image = writeImage(tmp.name('minimal.img'), 64 * LB, 13);
  const want = fs.readFileSync(image);
  data.copy(want, 16 * LB);
  const out = tmp.name('minimal-vf.img');
  const cat = await runTool(['virt-full-cat', image, file, '-o', out]);
  t.is(cat.code, 0, cat.stderr);
  t.is(firstDiff(fs.readFileSync(out), want), -1, 'virt-full-cat');
  const redo = await runTool(['wdiff', 'redo', file, image]);
  t.is(redo.code, 0, redo.stderr);
  t.is(firstDiff(fs.readFileSync(image), want), -1, 'wdiff redo');
});

test('a hand-built sorted wdiff with a zlib ("gzip", code 1) record, an all-zero and a discard record is read', async (t) => {
  const plain = Buffer.alloc(8 * LB, 'walb-ts ');
  const stored = zlib.deflateSync(plain); // RFC 1950 zlib stream, as compress2 writes
  t.true(stored.length < plain.length);
  const bytes = buildSortedWdiff(prngBytes(1, 16), [
    [
      { address: 0, blocks: 8, compression: 1, stored },
      { address: 8, blocks: 4, kind: 'allzero' },
    ],
    [{ address: 20, blocks: 4, kind: 'discard' }],
  ]);
  const file = tmp.name('zlib.wdiff');
  fs.writeFileSync(file, bytes);
  t.like(await native.wdiffVerify(file), { records: 3, dataBlocks: 8, allZeroBlocks: 4, discardBlocks: 4 });
  t.deepEqual(
    (await allRecords(file)).map((r) => [r.address, r.blocks, r.kind, r.compression, r.dataSize]),
    [
      [0, 8, 'normal', 'gzip', stored.length],
      [8, 4, 'allzero', 'none', 0],
      [20, 4, 'discard', 'none', 0],
    ],
  );
  const base = writeImage(tmp.name('zlib.img'), 32 * LB, 14);
  const want = fs.readFileSync(base);
  plain.copy(want, 0);
  want.fill(0, 8 * LB, 12 * LB);
  want.fill(0, 20 * LB, 24 * LB); // a virtual full image reads discards as zeros
  t.is(firstDiff(await readVirtualFull(base, [file]), want), -1);
  await native.wdiffRedo(file, base, { discard: 'zero' });
  t.is(firstDiff(fs.readFileSync(base), want), -1);
});

test('a hand-built indexed wdiff whose index records share one zlib image at different io_offsets is read', async (t) => {
  // One write of 4 LB at 6 split aligned into (6,2) and (8,2), plus an all-zero record (12,4).
  const plain = Buffer.concat([Buffer.alloc(2 * LB, 'a'), Buffer.alloc(2 * LB, 'b')]);
  const stored = zlib.deflateSync(plain);
  const header = buildWdiffHeader(1, prngBytes(2, 16));
  const pad = Buffer.alloc((8 - ((32 + stored.length) % 8)) % 8);
  const indexOffset = 32 + stored.length + pad.length;
  const image = {
    compression: 1,
    dataOffset: 32,
    dataSize: stored.length,
    origBlocks: 4,
    ioChecksum: csum(stored),
  };
  const bytes = Buffer.concat([
    header,
    stored,
    pad,
    buildIndexRecord({ address: 6, blocks: 2, ioOffset: 0, ...image }),
    buildIndexRecord({ address: 8, blocks: 2, ioOffset: 2, ...image }),
    buildIndexRecord({ address: 12, blocks: 4, kind: 'allzero' }),
    buildIndexTrailer(indexOffset, 3, 2),
  ]);
  const file = tmp.name('hand.wdiff');
  fs.writeFileSync(file, bytes);
  const v = await runTool(['wdiff', 'verify', file]);
  t.is(v.code, 0, v.stderr);
  t.deepEqual(
    (await allRecords(file)).map((r) => [
      r.address,
      r.blocks,
      r.kind,
      r.compression,
      r.ioOffset,
      r.origBlocks,
    ]),
    [
      [6, 2, 'normal', 'gzip', 0, 4],
      [8, 2, 'normal', 'gzip', 2, 4],
      [12, 4, 'allzero', 'none', 0, 0],
    ],
  );
  const base = writeImage(tmp.name('hand.img'), 32 * LB, 15);
  const want = fs.readFileSync(base);
  plain.copy(want, 6 * LB);
  want.fill(0, 12 * LB, 16 * LB);
  t.is(firstDiff(await readVirtualFull(base, [file]), want), -1, 'virtual full');
  await native.wdiffRedo(file, base, {});
  t.is(firstDiff(fs.readFileSync(base), want), -1, 'redo');
});

test('a sorted wdiff that ends at a pack boundary without an end pack is accepted (docs/formats.md §5.2)', async (t) => {
  const data = prngBytes(16, LB);
  const file = tmp.name('noend.wdiff');
  fs.writeFileSync(
    file,
    buildSortedWdiff(Buffer.alloc(16), [[{ address: 3, blocks: 1, stored: data }]], { endPack: false }),
  );
  t.like(await native.wdiffVerify(file), { records: 1, dataBlocks: 1 });
  const base = writeImage(tmp.name('noend.img'), 8 * LB);
  const img = await readVirtualFull(base, [file]);
  t.true(img.subarray(3 * LB, 4 * LB).equals(data));
});
