// Golden vectors for wlog files and logpacks (docs/formats.md §2 and §4). Generated wlogs are taken apart in plain JS by
// the byte offsets of docs/formats.md (test/format-oracle.ts parseWlog: wlog header fields at 0/2/4/8/12/16/20/24/40/48, pack
// header checksum @0, sector_type @4, total_io_size @6, logpack_lsid @8, n_records @16, n_padding @18, records of
// 32 bytes from 24 with checksum @0, flags @4, offset @8, io_size @16, lsid_local @20, lsid @24), and checked
// against the layout rules. Hand-built wlogs (format-oracle buildWlog: the same offsets written with Buffer writes,
// checksums by the plain-JS csum) prove that we read files we did not write.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import { native, type GenOptions } from '../../src/native';
import { allPacks, allRecords, readWlogHeader } from '../addon-readers';
import {
  LB,
  U64_MAX,
  buildEndBlock,
  buildWlog,
  buildWlogHeader,
  capacityPb,
  csum,
  parseWlog,
  reseal,
  type LogRecordSpec,
  type ParsedWlog,
} from '../format-oracle';
import { runTool } from '../processes';
import { firstDiff, prngBytes, readRange, sparseFile, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('golden-wlog');
test.after.always(() => tmp.cleanup());

/** Checks every pack of a parsed wlog against docs/formats.md §2.1-2.3 and §4; returns the problems found. */
function layoutProblems(w: ParsedWlog, bytes: Buffer, ring: number): { problems: string[]; endLsid: number } {
  const problems: string[] = [];
  const bad = (where: string, what: string) => {
    if (problems.length < 20) problems.push(`${where}: ${what}`);
  };
  const { pbs, salt } = w;
  const maxRecords = Math.floor((pbs - 24) / 32);
  let expect = Number(w.beginLsid);
  for (const p of w.packs) {
    const at = `pack at lsid ${p.lsid} (byte ${p.at})`;
    const hdr = bytes.subarray(p.at, p.at + pbs);
    if (p.sectorType !== 3) bad(at, `sector_type ${p.sectorType}`);
    if (csum(hdr, salt) !== 0) bad(at, 'header does not self-sum to 0 with the salt');
    if (p.reserved !== 0) bad(at, 'reserved field not 0');
    if (p.lsid !== expect) bad(at, `logpack_lsid is not the previous pack's next lsid ${expect}`);
    if (p.nRecords < 1 || p.nRecords > maxRecords) bad(at, `n_records ${p.nRecords}`);
    if (!hdr.subarray(24 + 32 * p.nRecords).every((x) => x === 0))
      bad(at, 'unused record slots are not zero');
    let used = 0;
    let paddings = 0;
    p.records.forEach((r, i) => {
      const rat = `${at} record ${i}`;
      if (r.reserved !== 0) bad(rat, 'reserved field not 0');
      if (![1, 3, 5].includes(r.flags)) bad(rat, `flags ${r.flags}`);
      if (r.lsid !== p.lsid + r.lsidLocal) bad(rat, 'lsid != logpack_lsid + lsid_local');
      if (r.lsidLocal !== 1 + used) bad(rat, `lsid_local ${r.lsidLocal}, data would start at ${1 + used}`);
      if (r.flags === 5) {
        if (r.checksum !== 0) bad(rat, 'discard with a checksum');
        if (r.ioSize === 0) bad(rat, 'discard of 0 LB');
        return;
      }
      const pb = capacityPb(pbs, r.ioSize);
      if (r.flags === 3) {
        paddings++;
        if (r.checksum !== 0 || r.offset !== 0) bad(rat, 'padding with a checksum or an offset');
        if (r.ioSize % (pbs / LB) !== 0) bad(rat, 'padding not a whole number of PB');
        if (ring > 0 && (r.lsid + pb) % ring !== 0) bad(rat, 'padding does not end at the ring end');
      } else {
        if (r.ioSize < 1 || r.ioSize > 65535) bad(rat, `io_size ${r.ioSize}`);
        const sum = csum(bytes.subarray(r.dataAt, r.dataAt + r.ioSize * LB), salt);
        if (sum !== r.checksum) bad(rat, 'data checksum (salted, over io_size*512 bytes) differs');
        if (ring > 0 && (r.lsid % ring) + pb > ring) bad(rat, 'record data crosses the ring end');
      }
      used += pb;
    });
    if (p.totalIoSize !== used) bad(at, `total_io_size ${p.totalIoSize}, records use ${used}`);
    if (p.nPadding !== paddings || paddings > 1)
      bad(at, `n_padding ${p.nPadding}, ${paddings} padding records`);
    expect = p.lsid + 1 + p.totalIoSize;
  }
  return { problems, endLsid: expect };
}

test('the wlog header of a generated wlog is the 4096-byte block of docs/formats.md §4', async (t) => {
  const file = tmp.name('hdr.wlog');
  const g = await native.wlogGen(file, {
    pbs: 4096,
    amount: 64 << 10,
    lsid: 1000,
    salt: 0x12345678,
    seed: 7,
  });
  const bytes = fs.readFileSync(file);
  const hdr = bytes.subarray(0, 4096);
  t.is(hdr.readUInt16LE(0), 4, 'sector_type @0');
  t.is(hdr.readUInt16LE(2), 2, 'version @2');
  t.is(hdr.readUInt16LE(4), 4096, 'header_size @4');
  t.is(hdr.readUInt16LE(6), 0, 'reserved @6');
  t.is(hdr.readUInt32LE(12), 0x12345678, 'log_checksum_salt @12');
  t.is(hdr.readUInt32LE(16), 512, 'logical_bs @16');
  t.is(hdr.readUInt32LE(20), 4096, 'physical_bs @20');
  t.is(hdr.readBigUInt64LE(40), 1000n, 'begin_lsid @40');
  t.is(hdr.readBigUInt64LE(48), U64_MAX, 'end_lsid @48 (an upper bound only)');
  t.true(
    hdr.subarray(56).every((x) => x === 0),
    'bytes 56..4095 are zero',
  );
  t.is(csum(hdr, 0), 0, 'self-checksum over 4096 bytes with salt 0');
  const h = readWlogHeader(file);
  t.deepEqual(h, {
    pbs: 4096,
    salt: 0x12345678,
    uuid: hdr.subarray(24, 40).toString('hex'),
    beginLsid: 1000,
    endLsid: U64_MAX,
  });
  const want = buildWlogHeader({ pbs: 4096, salt: 0x12345678, uuid: hdr.subarray(24, 40), beginLsid: 1000 });
  t.is(firstDiff(hdr, want), -1, 'equals the hand-built header');
  t.is(g.beginLsid, 1000);
  t.is(g.salt, 0x12345678);
});

test('the end block of a wlog is sector_type 3, logpack_lsid 2^64-1 and checksum ~salt (docs/formats.md §2.6, §4)', async (t) => {
  for (const [pbs, salt] of [
    [512, 0x12345678],
    [4096, 0xdeadbeef],
  ]) {
    const file = tmp.name('end.wlog');
    await native.wlogGen(file, { pbs, amount: 32 << 10, salt, seed: 3 });
    const bytes = fs.readFileSync(file);
    const end = bytes.subarray(bytes.length - pbs);
    t.is(end.readUInt32LE(0), ~salt >>> 0);
    t.is(firstDiff(end, buildEndBlock(pbs, salt)), -1);
    if (salt === 0x12345678) t.is(end.subarray(0, 16).toString('hex'), '87a9cbed03000000ffffffffffffffff');
  }
});

const workloads: { title: string; opts: GenOptions; ring: number }[] = [
  {
    title: 'pbs 512, ring padding, discards, overlaps',
    opts: {
      pbs: 512,
      deviceSize: 16384,
      amount: 3 << 20,
      maxIoSize: 64,
      discardRatio: 0.1,
      overlapRatio: 0.5,
      allZeroRatio: 0.1,
    },
    ring: 2000,
  },
  {
    title: 'pbs 4096, ring padding, discards, compressible data',
    opts: {
      pbs: 4096,
      deviceSize: 16384,
      amount: 3 << 20,
      maxIoSize: 128,
      discardRatio: 0.1,
      data: 'compressible',
    },
    ring: 300,
  },
];

for (const [i, w] of workloads.entries()) {
  test(`every logpack of a generated wlog is laid out as docs/formats.md §2.1-2.3 say (${w.title})`, async (t) => {
    const file = tmp.name('layout.wlog');
    const g = await native.wlogGen(file, {
      ...w.opts,
      ringBufferSize: w.ring,
      lsid: w.ring - 7,
      seed: 100 + i,
    });
    const bytes = fs.readFileSync(file);
    const parsed = parseWlog(bytes);
    t.is(parsed.pbs, w.opts.pbs!);
    const { problems, endLsid } = layoutProblems(parsed, bytes, w.ring);
    t.deepEqual(problems, []);
    t.true(g.paddings > 0, 'the workload crosses the ring end');
    t.true(g.discards > 0);
    t.is(parsed.packs.length, g.packs);
    t.is(endLsid, g.endLsid);
    t.is(
      parsed.packs.reduce((n, p) => n + p.records.filter((r) => r.flags === 3).length, 0),
      g.paddings,
    );
    t.is(
      parsed.packs.reduce((n, p) => n + p.records.filter((r) => r.flags === 5).length, 0),
      g.discards,
    );
    t.is(parsed.endBlockAt, bytes.length - w.opts.pbs!, 'the file ends with one end block');

    // The addon's own reader sees the same packs and records.
    const packs = await allPacks(file);
    t.deepEqual(
      packs.map((p) => [p.lsid, p.totalIoSize, p.nRecords, p.nPadding, p.checksum]),
      parsed.packs.map((p) => [p.lsid, p.totalIoSize, p.nRecords, p.nPadding, p.checksum]),
    );
    const kind = (f: number) => (f === 1 ? 'normal' : f === 3 ? 'padding' : 'discard');
    t.deepEqual(
      packs.flatMap((p) =>
        p.records.map((r) => [r.kind, r.offset, r.ioSize, r.lsid, r.lsidLocal, r.checksum]),
      ),
      parsed.packs.flatMap((p) =>
        p.records.map((r) => [kind(r.flags), r.offset, r.ioSize, r.lsid, r.lsidLocal, r.checksum]),
      ),
    );
    const v = await native.wlogVerify(file);
    t.is(v.packs, g.packs);
    t.is(v.endLsid, g.endLsid);
    t.true(v.endBlock);
  });
}

test('a logpack header holds at most 15 records with pbs 512 and 127 with pbs 4096 (docs/formats.md §2.1)', async (t) => {
  for (const [pbs, max, ioSize] of [
    [512, 15, 1],
    [4096, 127, 8],
  ]) {
    const file = tmp.name('full.wlog');
    await native.wlogGen(file, {
      pbs,
      amount: 600 * ioSize * LB,
      minIoSize: ioSize,
      maxIoSize: ioSize,
      maxIosPerPack: 1000,
      flushRatio: 0,
      overlapRatio: 0,
      seed: 5,
    });
    const bytes = fs.readFileSync(file);
    const parsed = parseWlog(bytes);
    t.is(Math.max(...parsed.packs.map((p) => p.nRecords)), max);
    t.deepEqual(layoutProblems(parsed, bytes, 0).problems, []);
  }
});

test('a hand-built minimal wlog (header, one pack with one record, end block) verifies and redoes', async (t) => {
  const salt = 0x0badf00d;
  const data = prngBytes(42, 2 * LB);
  const built = buildWlog({ pbs: 512, salt, uuid: prngBytes(1, 16), beginLsid: 100 }, [
    [{ kind: 'normal', offset: 8, ioSize: 2, data }],
  ]);
  t.is(built.bytes.length, 4096 + 512 + 1024 + 512);
  const file = tmp.name('minimal.wlog');
  fs.writeFileSync(file, built.bytes);

  const cli = await runTool(['wlog', 'verify', file, '--json']);
  t.is(cli.code, 0, cli.stderr);
  const v = JSON.parse(cli.stdout);
  t.like(v, {
    ok: true,
    packs: 1,
    records: 1,
    paddings: 0,
    discards: 0,
    dataBytes: 1024,
    endLsid: 103,
    endBlock: true,
  });
  t.like(v.header, { pbs: 512, salt, beginLsid: 100, uuid: prngBytes(1, 16).toString('hex') });

  const packs = await allPacks(file);
  t.deepEqual(packs, [
    {
      lsid: 100,
      totalIoSize: 2,
      nRecords: 1,
      nPadding: 0,
      checksum: built.packs[0].header.readUInt32LE(0),
      records: [
        { kind: 'normal', offset: 8, ioSize: 2, lsid: 101, lsidLocal: 1, checksum: csum(data, salt) },
      ],
    },
  ]);

  const image = writeImage(tmp.name('minimal.img'), 64 << 10);
  const redo = await runTool(['wlog', 'redo', file, image]);
  t.is(redo.code, 0, redo.stderr);
  const want = Buffer.alloc(64 << 10);
  data.copy(want, 8 * LB);
  t.is(firstDiff(fs.readFileSync(image), want), -1);
});

test('with pbs 4096 a 1-LB record checksums and applies only its 512 bytes, not the rest of its PB', async (t) => {
  const salt = 0x01020304;
  const area = Buffer.alloc(4096, 0xee); // junk after the first 512 bytes
  prngBytes(9, LB).copy(area);
  const built = buildWlog({ pbs: 4096, salt, uuid: Buffer.alloc(16), beginLsid: 0 }, [
    [{ kind: 'normal', offset: 3, ioSize: 1, data: area }],
  ]);
  const rec = parseWlog(built.bytes).packs[0].records[0];
  t.is(rec.checksum, csum(area.subarray(0, LB), salt));
  t.not(rec.checksum, csum(area, salt));
  const file = tmp.name('partial.wlog');
  fs.writeFileSync(file, built.bytes);
  const v = await native.wlogVerify(file);
  t.is(v.dataBytes, 512);
  t.is(v.endLsid, 2);

  const image = writeImage(tmp.name('partial.img'), 32 << 10, 77);
  const before = fs.readFileSync(image);
  await native.wlogRedo(file, image, {});
  const want = Buffer.from(before);
  area.copy(want, 3 * LB, 0, LB);
  t.is(firstDiff(fs.readFileSync(image), want), -1);

  const wdiff = tmp.name('partial.wdiff');
  await native.wlogToWdiff([file], wdiff, { compression: 'none' });
  const recs = await allRecords(wdiff);
  t.like(recs, [{ address: 3, blocks: 1, kind: 'normal', dataSize: 512 }]);
});

// The worked examples docs/formats.md §2.4 and §2.9 give, with pbs 512 and pbs 4096.
const examples = [
  {
    title: 'docs/formats.md §2.4 (pbs 512, ring 100, header at lsid 296)',
    pbs: 512,
    ring: 100,
    lsid: 296,
    records: [
      { kind: 'normal', offset: 1000, ioSize: 2 },
      { kind: 'discard', offset: 50, ioSize: 8 },
      { kind: 'padding', ioSize: 1 },
      { kind: 'normal', offset: 2000, ioSize: 4 },
    ] as LogRecordSpec[],
    // flags, offset, io_size, lsid, lsid_local
    table: [
      [0x1, 1000, 2, 297, 1],
      [0x5, 50, 8, 299, 3],
      [0x3, 0, 1, 299, 3],
      [0x1, 2000, 4, 300, 4],
    ],
    total: 7,
    next: 304,
  },
  {
    title: 'docs/formats.md §2.9 (pbs 4096, ring 1000, header at lsid 997)',
    pbs: 4096,
    ring: 1000,
    lsid: 997,
    records: [
      { kind: 'normal', offset: 100, ioSize: 8 },
      { kind: 'discard', offset: 5000, ioSize: 16 },
      { kind: 'padding', ioSize: 8 },
      { kind: 'normal', offset: 200, ioSize: 24 },
    ] as LogRecordSpec[],
    table: [
      [0x1, 100, 8, 998, 1],
      [0x5, 5000, 16, 999, 2],
      [0x3, 0, 8, 999, 2],
      [0x1, 200, 24, 1000, 3],
    ],
    total: 5,
    next: 1003,
  },
];

for (const ex of examples) {
  test(`the worked example of ${ex.title} is read, redone and placed in a log device as the example says`, async (t) => {
    const salt = 0xa5a5a5a5;
    const uuid = prngBytes(ex.pbs, 16);
    ex.records.forEach((r, i) => {
      if (r.kind === 'normal') r.data = prngBytes(1000 + i, capacityPb(ex.pbs, r.ioSize) * ex.pbs);
    });
    const built = buildWlog({ pbs: ex.pbs, salt, uuid, beginLsid: ex.lsid }, [ex.records]);
    const w = parseWlog(built.bytes);
    const p = w.packs[0];
    t.deepEqual(
      p.records.map((r) => [r.flags, r.offset, r.ioSize, r.lsid, r.lsidLocal]),
      ex.table,
      'the hand-built pack matches the table of the example',
    );
    t.is(p.nRecords, 4);
    t.is(p.nPadding, 1);
    t.is(p.totalIoSize, ex.total);
    t.is(built.endLsid, ex.next);
    t.deepEqual(layoutProblems(w, built.bytes, ex.ring).problems, []);

    const file = tmp.name('example.wlog');
    fs.writeFileSync(file, built.bytes);
    const v = await native.wlogVerify(file);
    t.like(v, { packs: 1, records: 4, paddings: 1, discards: 1, endLsid: ex.next, endBlock: true });

    // Redo: the two writes land at their offsets, the discard is zeroed, nothing else changes.
    const deviceLb = 6000;
    const image = writeImage(tmp.name('example.img'), deviceLb * LB, 5);
    const want = fs.readFileSync(image);
    for (const r of ex.records) {
      if (r.kind === 'normal') r.data!.copy(want, r.offset! * LB, 0, r.ioSize * LB);
      if (r.kind === 'discard') want.fill(0, r.offset! * LB, (r.offset! + r.ioSize) * LB);
    }
    const redo = await native.wlogRedo(file, image, { discard: 'zero' });
    t.is(redo.endLsid, ex.next);
    t.is(firstDiff(fs.readFileSync(image), want), -1);

    // In a log device whose ring has exactly ex.ring PB, the pack wraps: header and first record at the end of
    // the ring, the last record at ring slot 0.
    const rb = 4096 / ex.pbs + 2;
    const ldev = sparseFile(tmp.name('example.ldev'), (rb + ex.ring) * ex.pbs);
    const s = await native.formatLdev(ldev, { pbs: ex.pbs });
    t.is(s.ringBufferSize, ex.ring);
    t.is(await native.ldevRestore(file, ldev), ex.next);
    const slot = (lsid: number) => (rb + (lsid % ex.ring)) * ex.pbs;
    t.is(
      firstDiff(readRange(ldev, slot(ex.lsid), ex.pbs), built.packs[0].header),
      -1,
      'header at its ring slot',
    );
    for (const r of p.records.filter((x) => x.flags === 1)) {
      const len = capacityPb(ex.pbs, r.ioSize) * ex.pbs;
      const src = built.bytes.subarray(r.dataAt, r.dataAt + len);
      t.is(
        firstDiff(readRange(ldev, slot(r.lsid), len), src),
        -1,
        `record data at ring slot ${r.lsid % ex.ring}`,
      );
    }
    t.is(p.records[3].lsid % ex.ring, 0, 'the last record starts at ring slot 0');
    t.is(
      firstDiff(readRange(ldev, slot(ex.next), ex.pbs), buildEndBlock(ex.pbs, salt)),
      -1,
      'end block after it',
    );
    const sup = await native.readSuper(ldev);
    t.like(sup, { oldestLsid: ex.lsid, writtenLsid: ex.lsid, salt, uuid: uuid.toString('hex') });

    const back = tmp.name('example-back.wlog');
    const x = await native.ldevExtract(ldev, back, {});
    t.like(x, { beginLsid: ex.lsid, endLsid: ex.next, packs: 1, shrunk: false });
    t.is(firstDiff(fs.readFileSync(back), built.bytes), -1, 'extracting gives back the same file');
  });
}

test('readers accept a padding-only pack and a zero-length padding record in the middle of a pack (docs/formats.md §2.4)', async (t) => {
  const salt = 0x31415926;
  const d = (seed: number, lb: number) => prngBytes(seed, lb * LB);
  const packs: LogRecordSpec[][] = [
    [
      { kind: 'normal', offset: 10, ioSize: 2, data: d(1, 2) },
      { kind: 'padding', ioSize: 0 },
      { kind: 'normal', offset: 20, ioSize: 1, data: d(2, 1) },
    ],
    [{ kind: 'padding', ioSize: 3 }],
    [{ kind: 'normal', offset: 11, ioSize: 1, data: d(3, 1) }],
  ];
  const built = buildWlog({ pbs: 512, salt, uuid: prngBytes(4, 16), beginLsid: 7 }, packs);
  const file = tmp.name('padding.wlog');
  fs.writeFileSync(file, built.bytes);
  const v = await native.wlogVerify(file);
  t.like(v, { packs: 3, records: 5, paddings: 2, discards: 0, dataBytes: 4 * LB, endLsid: built.endLsid });
  t.is(built.endLsid, 7 + 4 + 4 + 2);

  const image = writeImage(tmp.name('padding.img'), 64 * LB);
  await native.wlogRedo(file, image, {});
  const want = Buffer.alloc(64 * LB);
  d(1, 2).copy(want, 10 * LB);
  d(2, 1).copy(want, 20 * LB);
  d(3, 1).copy(want, 11 * LB); // the newer write wins over the second half of the first one
  t.is(firstDiff(fs.readFileSync(image), want), -1);

  const wdiff = tmp.name('padding.wdiff');
  await native.wlogToWdiff([file], wdiff, {});
  const recs = await allRecords(wdiff);
  t.deepEqual(
    recs.map((r) => [r.address, r.blocks, r.kind]),
    [
      [10, 1, 'normal'],
      [11, 1, 'normal'],
      [20, 1, 'normal'],
    ],
    'padding is dropped; the overlap is resolved',
  );
});

test('a wlog cut exactly at a pack boundary (no end block) is accepted and says so', async (t) => {
  const built = buildWlog(
    { pbs: 512, salt: 1, uuid: Buffer.alloc(16), beginLsid: 0 },
    [
      [{ kind: 'normal', offset: 0, ioSize: 1, data: prngBytes(1, LB) }],
      [{ kind: 'discard', offset: 5, ioSize: 9 }],
    ],
    { endBlock: false },
  );
  const file = tmp.name('noend.wlog');
  fs.writeFileSync(file, built.bytes);
  const v = await native.wlogVerify(file);
  t.like(v, { packs: 2, endLsid: 3, endBlock: false });
  const r = await runTool(['wlog', 'verify', file]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /no end block/);
});

async function expectEndsAfterFirstPack(t: ExecutionContext, bytes: Buffer, endAt: number) {
  const file = tmp.name('empty-header.wlog');
  fs.writeFileSync(file, bytes);
  const v = await native.wlogVerify(file);
  t.like(v, { packs: 1, endLsid: 2 });
  t.is(parseWlog(bytes).endBlockAt, endAt);
  const r = await runTool(['wlog', 'verify', file]);
  t.is(r.code, 0, r.stderr);
}

test('an empty logpack header carrying a real lsid ends a wlog (docs/formats.md §2.7, §8c)', async (t) => {
  const salt = 0x55aa55aa;
  const built = buildWlog({ pbs: 512, salt, uuid: Buffer.alloc(16), beginLsid: 0 }, [
    [{ kind: 'normal', offset: 0, ioSize: 1, data: prngBytes(2, LB) }],
    [{ kind: 'normal', offset: 1, ioSize: 1, data: prngBytes(3, LB) }],
  ]);
  // Replace the second pack's header by an empty, checksummed header at its own lsid (what WalB's wdev-redo
  // or a reset leaves behind); the log ends there.
  const at = built.packs[0].header.length + built.packs[0].data.length + 4096;
  const empty = Buffer.alloc(512);
  empty.writeUInt16LE(3, 4);
  empty.writeBigUInt64LE(2n, 8);
  reseal(empty, 0, salt);
  const bytes = Buffer.concat([built.bytes.subarray(0, at), empty]);
  await expectEndsAfterFirstPack(t, bytes, at);
});

test('an end block ends a wlog whatever its checksum (docs/formats.md §2.7, §8c)', async (t) => {
  const salt = 0x55aa55aa;
  const built = buildWlog({ pbs: 512, salt, uuid: Buffer.alloc(16), beginLsid: 0 }, [
    [{ kind: 'normal', offset: 0, ioSize: 1, data: prngBytes(2, LB) }],
  ]);
  const bytes = Buffer.from(built.bytes);
  const at = bytes.length - 512;
  bytes.writeUInt32LE(0x12345678, at); // a checksum that does not sum to 0
  t.not(csum(bytes.subarray(at), salt), 0);
  await expectEndsAfterFirstPack(t, bytes, at);
});

test('a ring smaller than a workload pack still gives packs that fit the ring, each with one padding at most', async (t) => {
  // 16 IOs of up to 64 LB would make packs of ~1000 PB; the ring has 100 PB (docs/formats.md §2.4: 1 + total <= ring).
  const file = tmp.name('small-ring.wlog');
  const g = await native.wlogGen(file, {
    pbs: 512,
    amount: 1 << 20,
    maxIoSize: 64,
    ringBufferSize: 100,
    seed: 3,
  });
  const bytes = fs.readFileSync(file);
  const parsed = parseWlog(bytes);
  t.deepEqual(layoutProblems(parsed, bytes, 100).problems, []);
  t.true(g.paddings > 0);
  t.true(Math.max(...parsed.packs.map((p) => 1 + p.totalIoSize)) <= 100);
  await t.notThrowsAsync(native.wlogVerify(file));
  // A single write that cannot fit in the ring at all is refused.
  await t.throwsAsync(
    native.wlogGen(tmp.name('too-small.wlog'), {
      pbs: 512,
      amount: 1 << 20,
      minIoSize: 64,
      maxIoSize: 64,
      ringBufferSize: 60,
    }),
    { code: 'INVALID_ARGUMENT', message: /ring/ },
  );
});
