// Corruption and torn tails of wlogs (docs/formats.md §2.6, §4): one test per field or failure. The fixture is a
// hand-built wlog of three packs; the middle one holds a normal record, a discard, a padding record and another
// normal record. A header field is changed and the header re-checksummed with the salt (so that the field's own
// check fires), unless the checksum is the subject. The addon must reject with err.code and a message naming the
// file and byte offset, a conversion must leave no output behind, and walb-tool wlog verify must exit 1 naming
// the file and the code. Nothing may crash.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../src/native';
import {
  LB,
  buildWlog,
  csum,
  parseWlog,
  reseal,
  type ParsedLogpack,
  type ParsedWlog,
} from '../format-oracle';
import { expectToolFailure } from '../processes';
import { prngBytes, tempArea } from '../temp-files';

const tmp = tempArea('corrupt-wlog');
test.after.always(() => tmp.cleanup());

const SALT = 0x5eed5a17;
const fixture = buildWlog({ pbs: 512, salt: SALT, uuid: prngBytes(1, 16), beginLsid: 1000 }, [
  [{ kind: 'normal', offset: 0, ioSize: 2, data: prngBytes(2, 2 * LB) }],
  [
    { kind: 'normal', offset: 10, ioSize: 1, data: prngBytes(3, LB) },
    { kind: 'discard', offset: 40, ioSize: 4 },
    { kind: 'padding', ioSize: 2 },
    { kind: 'normal', offset: 20, ioSize: 3, data: prngBytes(4, 3 * LB) },
  ],
  [{ kind: 'normal', offset: 30, ioSize: 1, data: prngBytes(5, LB) }],
]);
const parsed = parseWlog(fixture.bytes);
const P = parsed.packs[1]; // the pack most cases corrupt

function write(bytes: Buffer): string {
  const file = tmp.name('bad.wlog');
  fs.writeFileSync(file, bytes);
  return file;
}

/** The fixture with `mutate` applied to a copy; the pack header at `resealPack` is re-checksummed after. */
function mutated(
  mutate: (b: Buffer, w: ParsedWlog) => void,
  resealPack?: ParsedLogpack,
  salt = SALT,
): string {
  const b = Buffer.from(fixture.bytes);
  mutate(b, parsed);
  if (resealPack) reseal(b.subarray(resealPack.at, resealPack.at + 512), 0, salt);
  return write(b);
}

async function rejected(t: ExecutionContext, file: string, code: string, message: RegExp, offset?: number) {
  const err = await t.throwsAsync(native.wlogVerify(file), { code, message });
  t.true(err?.message.includes(file), `the message names the file: ${err?.message}`);
  if (offset !== undefined)
    t.true(err?.message.includes(`at byte ${offset}`), `names byte ${offset}: ${err?.message}`);
  const outDir = tmp.name('out');
  fs.mkdirSync(outDir);
  await t.throwsAsync(native.wlogToWdiff([file], path.join(outDir, 'out.wdiff'), {}), { code });
  t.deepEqual(fs.readdirSync(outDir), [], 'a failed conversion leaves no output, not even a temporary file');
  await expectToolFailure(t, ['wlog', 'verify', file], { code, file, message });
}

test('the corruption fixture itself is a valid wlog', async (t) => {
  t.like(await native.wlogVerify(write(fixture.bytes)), { packs: 3, records: 6, discards: 1, paddings: 1 });
});

// ------------------------------------------------------------------------------------------- wlog header

test('a wlog whose header checksum is wrong is rejected as CORRUPTION', async (t) => {
  await rejected(
    t,
    mutated((b) => (b[8] ^= 1)),
    'CORRUPTION',
    /wlog header .*checksum mismatch/,
    0,
  );
});

test('a wlog header changed in its zero tail fails the checksum over all 4096 bytes', async (t) => {
  await rejected(
    t,
    mutated((b) => (b[4000] = 7)),
    'CORRUPTION',
    /checksum mismatch/,
    0,
  );
});

const headerCases: [string, (h: Buffer) => void, RegExp][] = [
  [
    'a wlog header with sector_type 3 is rejected as CORRUPTION',
    (h) => h.writeUInt16LE(3, 0),
    /sector_type is 3/,
  ],
  ['a wlog header with version 1 is rejected as CORRUPTION', (h) => h.writeUInt16LE(1, 2), /version is 1/],
  [
    'a wlog header with logical_bs 4096 is rejected as CORRUPTION',
    (h) => h.writeUInt32LE(4096, 16),
    /logical_bs/,
  ],
  [
    'a wlog header with physical_bs 1000 is rejected as CORRUPTION',
    (h) => h.writeUInt32LE(1000, 20),
    /physical_bs 1000/,
  ],
  [
    'a wlog header with physical_bs 8192 is rejected as CORRUPTION',
    (h) => h.writeUInt32LE(8192, 20),
    /physical_bs 8192/,
  ],
  [
    'a wlog header whose begin_lsid is not below end_lsid is rejected as CORRUPTION',
    (h) => h.writeBigUInt64LE(1000n, 48),
    /begin_lsid/,
  ],
];
for (const [title, mutate, message] of headerCases) {
  test(title, async (t) => {
    const file = mutated((b) => {
      mutate(b);
      reseal(b.subarray(0, 4096), 8, 0);
    });
    await rejected(t, file, 'CORRUPTION', message, 0);
  });
}

test('a wlog cut inside its 4096-byte header is reported as TRUNCATED', async (t) => {
  await rejected(t, write(fixture.bytes.subarray(0, 1000)), 'TRUNCATED', /end of file/);
  await rejected(t, write(Buffer.alloc(0)), 'TRUNCATED', /end of file/);
});

// ------------------------------------------------------------------------------------------- logpack header

test('a wlog whose logpack header checksum is wrong is rejected as CORRUPTION', async (t) => {
  await rejected(
    t,
    mutated((b) => (b[P.at + 20] ^= 1)),
    'CORRUPTION',
    /header checksum mismatch/,
    P.at,
  );
});

test('a logpack header sealed with another salt (left from an earlier format) is rejected as CORRUPTION', async (t) => {
  await rejected(
    t,
    mutated(() => undefined, P, SALT + 1),
    'CORRUPTION',
    /header checksum mismatch/,
    P.at,
  );
});

const packCases: [string, (b: Buffer) => void, RegExp][] = [
  [
    'a logpack header with sector_type 2 is rejected as CORRUPTION',
    (b) => b.writeUInt16LE(2, P.at + 4),
    /sector_type is 2/,
  ],
  [
    'a logpack header with more records than fit (16 with pbs 512) is rejected as CORRUPTION',
    (b) => b.writeUInt16LE(16, P.at + 16),
    /n_records 16 exceeds/,
  ],
  [
    'a logpack header with n_padding 2 is rejected as CORRUPTION',
    (b) => b.writeUInt16LE(2, P.at + 18),
    /n_padding 2/,
  ],
  [
    'a logpack header whose total_io_size does not match its records is rejected as CORRUPTION',
    (b) => b.writeUInt16LE(P.totalIoSize + 1, P.at + 6),
    /total_io_size does not match/,
  ],
  [
    'a logpack header whose logpack_lsid is not the next lsid is rejected as CORRUPTION',
    (b) => {
      // Move the whole pack one lsid on (header and records agree), so only the sequence is wrong.
      b.writeBigUInt64LE(BigInt(P.lsid + 1), P.at + 8);
      for (const r of P.records) b.writeBigUInt64LE(BigInt(r.lsid + 1), r.at + 24);
    },
    /logpack_lsid 1004 where 1003 was expected/,
  ],
  [
    'a log record with lsid_local 0 is rejected as CORRUPTION',
    (b) => b.writeUInt16LE(0, P.records[0].at + 20),
    /record 0: lsid_local is 0/,
  ],
  [
    'a log record whose EXIST flag is cleared is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(0, P.records[3].at + 4),
    /record 3: EXIST flag not set/,
  ],
  [
    'a normal log record of 0 LB is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(0, P.records[0].at + 16),
    /record 0: io_size is 0/,
  ],
  [
    'a normal log record longer than 65535 LB is rejected as CORRUPTION',
    (b) => b.writeUInt32LE(65536, P.records[0].at + 16),
    /io_size exceeds 65535/,
  ],
  [
    'a log record whose lsid is not logpack_lsid + lsid_local is rejected as CORRUPTION',
    (b) => b.writeBigUInt64LE(BigInt(P.records[3].lsid + 1), P.records[3].at + 24),
    /record 3: lsid does not match lsid_local/,
  ],
  [
    'a log record whose data does not follow the previous record is rejected as CORRUPTION',
    (b) => {
      const r = P.records[3];
      b.writeUInt16LE(r.lsidLocal + 1, r.at + 20);
      b.writeBigUInt64LE(BigInt(r.lsid + 1), r.at + 24);
    },
    /record 3: data is not contiguous/,
  ],
  [
    'a discard record that is not where the next data would start is rejected as CORRUPTION (docs/formats.md §2.3)',
    (b) => {
      const r = P.records[1];
      b.writeUInt16LE(r.lsidLocal + 1, r.at + 20);
      b.writeBigUInt64LE(BigInt(r.lsid + 1), r.at + 24);
    },
    /record 1: discard is not where/,
  ],
];
for (const [title, mutate, message] of packCases) {
  test(title, async (t) => {
    await rejected(t, mutated(mutate, P), 'CORRUPTION', message, P.at);
  });
}

// ------------------------------------------------------------------------------------------- log data

test('a wlog whose record data does not match its checksum is rejected as CORRUPTION at that record', async (t) => {
  const r = P.records[3];
  await rejected(
    t,
    mutated((b) => (b[r.dataAt + 700] ^= 0x40)),
    'CORRUPTION',
    /data checksum mismatch in record 3/,
    r.dataAt,
  );
  const r0 = P.records[0];
  await rejected(
    t,
    mutated((b) => (b[r0.dataAt] ^= 1)),
    'CORRUPTION',
    /data checksum mismatch in record 0/,
    r0.dataAt,
  );
});

test('a log record whose stored checksum was changed (header re-sealed) is rejected as CORRUPTION', async (t) => {
  const r = P.records[0];
  await rejected(
    t,
    mutated((b) => b.writeUInt32LE((r.checksum + 1) >>> 0, r.at), P),
    'CORRUPTION',
    /data checksum mismatch in record 0/,
    r.dataAt,
  );
});

test('the content of padding blocks is covered by no checksum and may be anything', async (t) => {
  const pad = P.records[2];
  const file = mutated((b) => b.fill(0xab, pad.dataAt, pad.dataAt + 2 * LB));
  t.like(await native.wlogVerify(file), { packs: 3 });
});

// ------------------------------------------------------------------------------------------- torn tails

test("a wlog cut in the middle of a pack's data is reported as TRUNCATED", async (t) => {
  const r = P.records[3];
  await rejected(
    t,
    write(fixture.bytes.subarray(0, r.dataAt + 100)),
    'TRUNCATED',
    /file ends inside logpack data/,
    P.dataAt,
  );
});

test('a wlog cut in the middle of a logpack header is reported as TRUNCATED', async (t) => {
  await rejected(
    t,
    write(fixture.bytes.subarray(0, P.at + 100)),
    'TRUNCATED',
    /file ends inside a logpack header/,
    P.at,
  );
});

test('a wlog cut in the middle of its end block is reported as TRUNCATED', async (t) => {
  await rejected(
    t,
    write(fixture.bytes.subarray(0, fixture.bytes.length - 10)),
    'TRUNCATED',
    /logpack header/,
  );
});

// ------------------------------------------------------------------------------------------- no crash

test('no single flipped byte of a wlog crashes or slips through: each is CORRUPTION, TRUNCATED or harmless', async (t) => {
  // Checksums cover every byte except padding blocks, the end block (docs/formats.md §8c) and the unused tail.
  const uncovered = (i: number) =>
    (i >= P.records[2].dataAt && i < P.records[2].dataAt + 2 * LB) || i >= parsed.endBlockAt;
  const codes = new Map<string, number>();
  for (let i = 0; i < fixture.bytes.length; i += 37) {
    const b = Buffer.from(fixture.bytes);
    b[i] ^= 0x5a;
    let code = 'ok';
    try {
      await native.wlogVerify(write(b));
    } catch (e) {
      code = (e as { code: string }).code;
    }
    codes.set(code, (codes.get(code) ?? 0) + 1);
    if (code === 'ok') t.true(uncovered(i), `a flip at byte ${i} went unnoticed`);
    else t.true(code === 'CORRUPTION' || code === 'TRUNCATED', `flip at byte ${i}: ${code}`);
  }
  t.true((codes.get('CORRUPTION') ?? 0) > 50);
});

test('random fields of re-sealed logpack headers never crash the reader', async (t) => {
  const rnd = prngBytes(99, 4000);
  let k = 0;
  for (let n = 0; n < 300; n++) {
    const b = Buffer.from(fixture.bytes);
    const p = parsed.packs[rnd[k++] % 3];
    const field = 4 + (rnd[k++] % (20 + 32 * p.nRecords));
    b[p.at + field] = rnd[k++];
    reseal(b.subarray(p.at, p.at + 512), 0, SALT);
    try {
      await native.wlogVerify(write(b));
    } catch (e) {
      const code = (e as { code: string }).code;
      t.true(
        code === 'CORRUPTION' || code === 'TRUNCATED',
        `byte ${p.at + field}: ${code} ${(e as Error).message}`,
      );
    }
  }
  t.is(csum(fixture.bytes.subarray(P.at, P.at + 512), SALT), 0);
});
