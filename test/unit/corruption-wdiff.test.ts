// Corruption and truncation of wdiff files (docs/formats.md §5): one test per field or failure, on hand-built sorted and
// indexed fixtures. A field is changed and its block re-checksummed (so that the field's own check fires), unless
// a checksum is the subject. The addon must reject verify and redo with err.code and a message naming the file,
// and walb-tool wdiff verify must exit 1 naming the file and the code. Nothing may crash.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { native } from '../../src/native';
import { readVirtualFull } from '../addon-readers';
import {
  LB,
  buildIndexRecord,
  buildIndexTrailer,
  buildSortedWdiff,
  buildWdiffHeader,
  csum,
  parseIndexedWdiff,
  parseSortedWdiff,
  reseal,
} from '../format-oracle';
import { expectToolFailure, runTool } from '../processes';
import { prngBytes, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('corrupt-wdiff');
test.after.always(() => tmp.cleanup());

// ---------------------------------------------------------------------------------------------- fixtures

const plain = Buffer.alloc(8 * LB, 'compressible ');
const sortedFixture = buildSortedWdiff(prngBytes(1, 16), [
  [
    { address: 0, blocks: 4, stored: prngBytes(2, 4 * LB) },
    { address: 8, blocks: 2, kind: 'allzero' },
    { address: 16, blocks: 8, compression: 1, stored: zlib.deflateSync(plain) },
    { address: 32, blocks: 2, stored: prngBytes(3, 2 * LB) },
  ],
  [
    { address: 100, blocks: 2, stored: prngBytes(4, 2 * LB) },
    { address: 200, blocks: 8, kind: 'discard' },
  ],
]);
const S = parseSortedWdiff(sortedFixture);
const S0 = S.packs[0];
const S1 = S.packs[1];

const imageA = prngBytes(5, 8 * LB); // one write of 8 LB at 4, indexed as (4,4) and (8,4)
const imageB = zlib.deflateSync(Buffer.alloc(4 * LB, 'zlib ')); // a write of 4 LB at 12
const indexedFixture = (() => {
  const bAt = 32 + imageA.length;
  const dataEnd = bAt + imageB.length;
  const pad = Buffer.alloc((8 - (dataEnd % 8)) % 8);
  const a = { dataOffset: 32, dataSize: imageA.length, origBlocks: 8, ioChecksum: csum(imageA) };
  return Buffer.concat([
    buildWdiffHeader(1, prngBytes(6, 16)),
    imageA,
    imageB,
    pad,
    buildIndexRecord({ address: 4, blocks: 4, ioOffset: 0, ...a }),
    buildIndexRecord({ address: 8, blocks: 4, ioOffset: 4, ...a }),
    buildIndexRecord({
      address: 12,
      blocks: 4,
      compression: 1,
      dataOffset: bAt,
      dataSize: imageB.length,
      origBlocks: 4,
      ioChecksum: csum(imageB),
    }),
    buildIndexRecord({ address: 16, blocks: 16, kind: 'allzero' }),
    buildIndexRecord({ address: 64, blocks: 8, kind: 'discard' }),
    buildIndexTrailer(dataEnd + pad.length, 5, 4),
  ]);
})();
const I = parseIndexedWdiff(indexedFixture);

function write(bytes: Buffer): string {
  const file = tmp.name('bad.wdiff');
  fs.writeFileSync(file, bytes);
  return file;
}

function mutated(
  fixture: Buffer,
  mutate: (b: Buffer) => void,
  reseals: [number, number, number][] = [],
): string {
  const b = Buffer.from(fixture);
  mutate(b);
  for (const [at, len, field] of reseals) reseal(b.subarray(at, at + len), field, 0);
  return write(b);
}
const fileHeader: [number, number, number] = [0, 32, 0];
const pack = (p: { at: number }): [number, number, number] => [p.at, 4096, 0];
const indexRecord = (k: number): [number, number, number] => [I.records[k].at, 48, 44];
const trailer: [number, number, number] = [I.trailer.at, 24, 20];

async function rejected(t: ExecutionContext, file: string, code: string, message: RegExp, offset?: number) {
  const err = await t.throwsAsync(native.wdiffVerify(file), { code, message });
  t.true(err?.message.includes(file), `the message names the file: ${err?.message}`);
  if (offset !== undefined)
    t.true(err?.message.includes(`at byte ${offset}`), `names byte ${offset}: ${err?.message}`);
  const image = writeImage(tmp.name('redo.img'), 256 * LB);
  await t.throwsAsync(native.wdiffRedo(file, image, {}), { code });
  await expectToolFailure(t, ['wdiff', 'verify', file], { code, file, message });
}

test('the corruption fixtures themselves are valid wdiffs', async (t) => {
  t.like(await native.wdiffVerify(write(sortedFixture)), {
    records: 6,
    dataBlocks: 16,
    allZeroBlocks: 2,
    discardBlocks: 8,
  });
  t.like(await native.wdiffVerify(write(indexedFixture)), {
    records: 5,
    dataBlocks: 12,
    allZeroBlocks: 16,
    discardBlocks: 8,
  });
  t.is(S.packs.length, 2);
  t.is(I.records.length, 5);
});

// ---------------------------------------------------------------------------------------------- file header

for (const [kind, fixture] of [
  ['sorted', sortedFixture],
  ['indexed', indexedFixture],
] as const) {
  const a = kind === 'indexed' ? 'an' : 'a';
  test(`${a} ${kind} wdiff whose file header checksum is wrong is rejected as CORRUPTION`, async (t) => {
    await rejected(
      t,
      mutated(fixture, (b) => (b[20] ^= 1)),
      'CORRUPTION',
      /wdiff header checksum mismatch/,
      0,
    );
  });
  test(`${a} ${kind} wdiff of version 1 is rejected as CORRUPTION`, async (t) => {
    await rejected(
      t,
      mutated(fixture, (b) => b.writeUInt16LE(1, 4), [fileHeader]),
      'CORRUPTION',
      /version 1 is not 2/,
    );
  });
  test(`${a} ${kind} wdiff of unknown type 2 is rejected as CORRUPTION`, async (t) => {
    await rejected(
      t,
      mutated(fixture, (b) => b.writeUInt8(2, 6), [fileHeader]),
      'CORRUPTION',
      /unknown wdiff type 2/,
    );
  });
  test(`${a} ${kind} wdiff cut inside its 32-byte file header is reported as TRUNCATED`, async (t) => {
    await rejected(t, write(fixture.subarray(0, 20)), 'TRUNCATED', /end of file/);
    await rejected(t, write(Buffer.alloc(0)), 'TRUNCATED', /end of file/);
  });
}

// ---------------------------------------------------------------------------------------------- sorted

test('a sorted wdiff whose pack header checksum is wrong is rejected as CORRUPTION', async (t) => {
  await rejected(
    t,
    mutated(sortedFixture, (b) => (b[S1.at + 16] ^= 1)),
    'CORRUPTION',
    /pack header checksum mismatch/,
    S1.at,
  );
});

const sortedCases: [string, (b: Buffer) => void, RegExp][] = [
  [
    'a sorted pack with 128 records is rejected as CORRUPTION',
    (b) => b.writeUInt16LE(128, S1.at + 4),
    /too many records/,
  ],
  [
    'a sorted pack announcing more than 32 MiB of data is rejected as CORRUPTION',
    (b) => b.writeUInt32LE((32 << 20) + 1, S1.at + 8),
    /32 MiB/,
  ],
  [
    'a sorted record with compression code 6 is rejected as CORRUPTION',
    (b) => b.writeUInt8(6, S0.records[0].at + 13),
    /unknown compression code/,
  ],
  [
    'a sorted record both all-zero and discard is rejected as CORRUPTION',
    (b) => b.writeUInt8(6, S0.records[1].at + 12),
    /both all-zero and discard/,
  ],
  [
    'a sorted record with an unknown flag 0x08 is rejected as CORRUPTION',
    (b) => b.writeUInt8(8, S0.records[0].at + 12),
    /unknown record flags 8/,
  ],
  [
    'a sorted record of 0 blocks is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(0, S0.records[3].at + 8),
    /record of 0 blocks/,
  ],
  [
    'a sorted record whose data_offset is not the sum of the previous data sizes is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(S0.records[3].dataOffset + 1, S0.records[3].at + 16),
    /data_offset is not contiguous/,
  ],
  [
    'an all-zero sorted record carrying data is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(1, S0.records[1].at + 20),
    /data on an all-zero\/discard record/,
  ],
  [
    'a sorted record whose stored checksum was changed (pack re-sealed) is rejected as CORRUPTION',
    (b) => b.writeUInt32LE((S0.records[2].checksum + 1) >>> 0, S0.records[2].at + 24),
    /record data checksum mismatch/,
  ],
  [
    'sorted records out of order within a pack are rejected as CORRUPTION',
    (b) => b.writeBigUInt64LE(2n, S0.records[3].at),
    /not sorted or overlap/,
  ],
  [
    'sorted records out of order across packs are rejected as CORRUPTION',
    (b) => b.writeBigUInt64LE(33n, S1.records[0].at),
    /not sorted or overlap \(address 33 below 34\)/,
  ],
  [
    'an uncompressed sorted record whose data size is not io_blocks*512 is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(5, S0.records[0].at + 8),
    /cannot decompress \(none\)/,
  ],
];
for (const [title, mutate, message] of sortedCases) {
  test(title, async (t) => {
    const p = title.includes('across packs') || title.includes('128') || title.includes('32 MiB') ? S1 : S0;
    await rejected(t, mutated(sortedFixture, mutate, [pack(p)]), 'CORRUPTION', message);
  });
}

test('a sorted record whose data does not match its checksum is rejected as CORRUPTION', async (t) => {
  const r = S0.records[2];
  const at = S0.at + 4096 + r.dataOffset;
  await rejected(
    t,
    mutated(sortedFixture, (b) => (b[at + 3] ^= 1)),
    'CORRUPTION',
    /record data checksum mismatch/,
    at,
  );
});

test('a zlib sorted record that does not decompress (checksum intact) is rejected as CORRUPTION', async (t) => {
  const r = S0.records[2];
  const at = S0.at + 4096 + r.dataOffset;
  const file = mutated(
    sortedFixture,
    (b) => {
      b.fill(0x33, at + 2, at + r.dataSize);
      b.writeUInt32LE(csum(b.subarray(at, at + r.dataSize)), r.at + 24);
    },
    [pack(S0)],
  );
  await rejected(t, file, 'CORRUPTION', /cannot decompress \(gzip\)/, at);
});

test('a sorted wdiff cut in the middle of pack data is reported as TRUNCATED', async (t) => {
  await rejected(
    t,
    write(sortedFixture.subarray(0, S1.at + 4096 + 10)),
    'TRUNCATED',
    /file ends inside pack data/,
    S1.at + 4096,
  );
});

test('a sorted wdiff cut in the middle of a pack header is reported as TRUNCATED', async (t) => {
  await rejected(
    t,
    write(sortedFixture.subarray(0, S1.at + 1000)),
    'TRUNCATED',
    /file ends inside a pack header/,
    S1.at,
  );
});

test('a sorted wdiff cut in the middle of its end pack is reported as TRUNCATED', async (t) => {
  await rejected(
    t,
    write(sortedFixture.subarray(0, S.endPackAt + 100)),
    'TRUNCATED',
    /pack header/,
    S.endPackAt,
  );
});

// ---------------------------------------------------------------------------------------------- indexed

test('an indexed wdiff whose trailer checksum is wrong is rejected as CORRUPTION', async (t) => {
  await rejected(
    t,
    mutated(indexedFixture, (b) => (b[I.trailer.at + 12] ^= 1)),
    'CORRUPTION',
    /index trailer checksum mismatch/,
    I.trailer.at,
  );
});

const trailerCases: [string, number][] = [
  [
    'an indexed wdiff whose index_offset is not a multiple of 8 is rejected as CORRUPTION',
    I.trailer.indexOffset + 4,
  ],
  ['an indexed wdiff whose index_offset is past the trailer is rejected as CORRUPTION', I.trailer.at + 48],
  ['an indexed wdiff whose index_offset is inside the file header is rejected as CORRUPTION', 8],
  [
    'an indexed wdiff whose index does not end at the trailer (index_offset off by 8) is rejected as CORRUPTION',
    I.trailer.indexOffset + 8,
  ],
];
for (const [title, offset] of trailerCases) {
  test(title, async (t) => {
    const file = mutated(indexedFixture, (b) => b.writeBigUInt64LE(BigInt(offset), I.trailer.at), [trailer]);
    await rejected(t, file, 'CORRUPTION', new RegExp(`index_offset ${offset} is invalid`), I.trailer.at);
  });
}

test('an indexed wdiff whose index record checksum is wrong is rejected as CORRUPTION', async (t) => {
  const r = I.records[2];
  await rejected(
    t,
    mutated(indexedFixture, (b) => (b[r.at + 36] ^= 1)),
    'CORRUPTION',
    /index record checksum mismatch/,
    r.at,
  );
});

const indexCases: [string, number, (b: Buffer, at: number) => void, RegExp][] = [
  [
    'an index record with compression code 6 is rejected as CORRUPTION',
    0,
    (b, at) => b.writeUInt8(6, at + 13),
    /unknown compression code/,
  ],
  [
    'an index record with an unknown flag 0x08 is rejected as CORRUPTION',
    0,
    (b, at) => b.writeUInt8(8, at + 12),
    /unknown record flags 8/,
  ],
  [
    'an index record of 0 blocks is rejected as CORRUPTION',
    2,
    (b, at) => b.writeUInt32LE(0, at + 8),
    /index record of 0 blocks/,
  ],
  [
    'an index record whose range runs past its image (io_offset + io_blocks > orig_blocks) is rejected as CORRUPTION',
    1,
    (b, at) => b.writeUInt32LE(5, at + 28),
    /range beyond its image/,
  ],
  [
    'an index record whose image lies past the data area is rejected as CORRUPTION',
    2,
    (b, at) => b.writeBigUInt64LE(BigInt(I.trailer.indexOffset), at + 16),
    /image outside the data area/,
  ],
  [
    'an index record whose image starts inside the file header is rejected as CORRUPTION',
    0,
    (b, at) => b.writeBigUInt64LE(8n, at + 16),
    /image outside the data area/,
  ],
];
for (const [title, k, mutate, message] of indexCases) {
  test(title, async (t) => {
    const at = I.records[k].at;
    await rejected(
      t,
      mutated(indexedFixture, (b) => mutate(b, at), [indexRecord(k)]),
      'CORRUPTION',
      message,
      at,
    );
  });
}

test('indexed records out of order are rejected as CORRUPTION', async (t) => {
  // Swapping two whole records keeps each one's own checksum valid.
  const [a, b2] = [I.records[1], I.records[2]];
  const file = mutated(indexedFixture, (b) => {
    const x = Buffer.from(b.subarray(a.at, a.at + 48));
    b.copy(b, a.at, b2.at, b2.at + 48);
    x.copy(b, b2.at);
  });
  await rejected(t, file, 'CORRUPTION', /not sorted or overlap/, b2.at);
});

test('an indexed image that does not match io_checksum is rejected as CORRUPTION', async (t) => {
  await rejected(
    t,
    mutated(indexedFixture, (b) => (b[32 + 1000] ^= 1)),
    'CORRUPTION',
    /image checksum mismatch/,
    32,
  );
});

test('an indexed zlib image that does not decompress (checksums intact) is rejected as CORRUPTION', async (t) => {
  const r = I.records[2];
  const file = mutated(
    indexedFixture,
    (b) => {
      b.fill(0x44, r.dataOffset + 2, r.dataOffset + r.dataSize);
      b.writeUInt32LE(csum(b.subarray(r.dataOffset, r.dataOffset + r.dataSize)), r.at + 40);
    },
    [indexRecord(2)],
  );
  await rejected(t, file, 'CORRUPTION', /cannot decompress \(gzip\)/, r.dataOffset);
});

test('an indexed wdiff cut short fails its trailer checksum (CORRUPTION): the trailer is the last 24 bytes', async (t) => {
  await rejected(
    t,
    write(indexedFixture.subarray(0, indexedFixture.length - 5)),
    'CORRUPTION',
    /trailer checksum mismatch/,
  );
  await rejected(
    t,
    write(indexedFixture.subarray(0, I.records[3].at)),
    'CORRUPTION',
    /trailer checksum mismatch/,
  );
});

test('an indexed wdiff too short to hold its trailer is reported as TRUNCATED', async (t) => {
  await rejected(t, write(indexedFixture.subarray(0, 40)), 'TRUNCATED', /too short for its trailer/);
});

// ---------------------------------------------------------------------------------------------- virtual full

// A virtual full image reads the wdiffs through its own per-range readers; it must refuse what verify refuses.
const vfCases: [string, () => string, string][] = [
  [
    'a sorted wdiff with a bad pack header checksum',
    () => mutated(sortedFixture, (b) => (b[S1.at + 16] ^= 1)),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff with bad record data',
    () => mutated(sortedFixture, (b) => (b[S0.at + 4096 + 5] ^= 1)),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff with compression code 6',
    () => mutated(sortedFixture, (b) => b.writeUInt8(6, S0.records[0].at + 13), [pack(S0)]),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff cut inside pack data',
    () => write(sortedFixture.subarray(0, S1.at + 4096 + 10)),
    'TRUNCATED',
  ],
  [
    'a sorted wdiff cut inside a pack header',
    () => write(sortedFixture.subarray(0, S1.at + 1000)),
    'TRUNCATED',
  ],
  [
    'a sorted wdiff whose records are out of order',
    () => mutated(sortedFixture, (b) => b.writeBigUInt64LE(2n, S0.records[3].at), [pack(S0)]),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff with a record both all-zero and discard',
    () => mutated(sortedFixture, (b) => b.writeUInt8(6, S0.records[1].at + 12), [pack(S0)]),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff with a record flag 0x08',
    () => mutated(sortedFixture, (b) => b.writeUInt8(8, S0.records[0].at + 12), [pack(S0)]),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff with a record of 0 blocks',
    () => mutated(sortedFixture, (b) => b.writeUInt32LE(0, S0.records[1].at + 8), [pack(S0)]),
    'CORRUPTION',
  ],
  [
    'a sorted wdiff with an all-zero record carrying data',
    () => mutated(sortedFixture, (b) => b.writeUInt32LE(1, S0.records[1].at + 20), [pack(S0)]),
    'CORRUPTION',
  ],
  [
    'an indexed wdiff with a bad trailer checksum',
    () => mutated(indexedFixture, (b) => (b[I.trailer.at + 12] ^= 1)),
    'CORRUPTION',
  ],
  [
    'an indexed wdiff with a bad index record checksum',
    () => mutated(indexedFixture, (b) => (b[I.records[2].at + 36] ^= 1)),
    'CORRUPTION',
  ],
  [
    'an indexed wdiff with a bad image',
    () => mutated(indexedFixture, (b) => (b[32 + 1000] ^= 1)),
    'CORRUPTION',
  ],
];
for (const [what, make, code] of vfCases) {
  test(`virtual full reads and walb-tool virt-full-cat refuse ${what} (${code})`, async (t) => {
    const file = make();
    const base = writeImage(tmp.name('vf-base.img'), 256 * LB);
    await t.throwsAsync(readVirtualFull(base, [file]), { code });
    await expectToolFailure(t, ['virt-full-cat', base, file, '-o', tmp.name('vf.img')], { code, file });
  });
}

// ---------------------------------------------------------------------------------------------- no crash

test('no single flipped byte of a sorted or indexed wdiff crashes or slips through', async (t) => {
  for (const [kind, fixture] of [
    ['sorted', sortedFixture],
    ['indexed', indexedFixture],
  ] as const) {
    const base = writeImage(tmp.name('flip-base.img'), 256 * LB);
    for (let i = 0; i < fixture.length; i += kind === 'sorted' ? 97 : 13) {
      const b = Buffer.from(fixture);
      b[i] ^= 0x21;
      const file = write(b);
      for (const [reader, run] of [
        ['verify', () => native.wdiffVerify(file)],
        ['virtual full', () => readVirtualFull(base, [file])],
      ] as const) {
        let code = 'ok';
        try {
          await run();
        } catch (e) {
          code = (e as { code: string }).code;
        }
        t.true(
          code === 'CORRUPTION' || code === 'TRUNCATED' || code === 'ok',
          `${kind} ${reader}, flip at ${i}: ${code}`,
        );
        if (code === 'ok') {
          // Only the zero padding before an indexed index is covered by no checksum. A virtual full image does
          // not look at the end pack beyond its flag (it holds no data), so a flip there is harmless to it.
          const inPad =
            kind === 'indexed' && i >= 32 + imageA.length + imageB.length && i < I.trailer.indexOffset;
          const inEndPack =
            kind === 'sorted' && reader === 'virtual full' && i >= S.endPackAt && i !== S.endPackAt + 6;
          t.true(inPad || inEndPack, `${kind} ${reader}: a flip at byte ${i} went unnoticed`);
        }
      }
    }
  }
});

test('walb-tool wdiff show lists the records of both fixtures', async (t) => {
  const r = await runTool(['wdiff', 'show', write(indexedFixture), '--json']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(
    JSON.parse(r.stdout).records.map((x: { address: number; blocks: number; kind: string }) => [
      x.address,
      x.blocks,
      x.kind,
    ]),
    [
      [4, 4, 'normal'],
      [8, 4, 'normal'],
      [12, 4, 'normal'],
      [16, 16, 'allzero'],
      [64, 8, 'discard'],
    ],
  );
});

test('merging a corrupt or truncated wdiff fails with its code, on the reading threads too, and leaves no output', async (t) => {
  const good = write(sortedFixture);
  const bad: [string, string][] = [
    [mutated(sortedFixture, (b) => (b[S1.at + 4096 + 5] ^= 1)), 'CORRUPTION'],
    [mutated(indexedFixture, (b) => (b[32 + 1000] ^= 1)), 'CORRUPTION'],
    [write(sortedFixture.subarray(0, S1.at + 4096 + 10)), 'TRUNCATED'],
  ];
  for (const [file, code] of bad) {
    for (const inputs of [
      [good, file],
      [file, good],
    ]) {
      const outDir = tmp.name('merge-out');
      fs.mkdirSync(outDir);
      await t.throwsAsync(native.wdiffMerge(inputs, path.join(outDir, 'm.wdiff'), {}), { code });
      t.deepEqual(fs.readdirSync(outDir), [], 'no output, not even a temporary file');
    }
    await expectToolFailure(t, ['wdiff', 'merge', good, file, '-o', tmp.name('m.wdiff')], { code, file });
  }
});
