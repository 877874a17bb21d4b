// Corruption of the log device super sector (docs/formats.md §1.2): one test per field a reader must check. Each field
// is changed and the block re-checksummed (so that the field's own check is what fires), except where the
// checksum itself is the subject. Both the addon (err.code) and walb-tool (exit 1, the file and [CODE] on
// stderr) must report it, and neither may crash.
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { U64_MAX, reseal } from '../format-oracle';
import { expectToolFailure } from '../processes';
import { patchFile, readRange, sparseFile, tempArea } from '../temp-files';

const tmp = tempArea('corrupt-ldev');
test.after.always(() => tmp.cleanup());

async function ldevWith(pbs: number, mutate: (block: Buffer) => void, resealIt = true): Promise<string> {
  const ldev = sparseFile(tmp.name(`ldev-${pbs}`), 1 << 20);
  await native.formatLdev(ldev, { pbs, name: 'walb0' });
  const block = readRange(ldev, 4096, pbs);
  mutate(block);
  if (resealIt) reseal(block, 4, 0);
  patchFile(ldev, 4096, block);
  return ldev;
}

const cases: {
  title: string;
  mutate: (b: Buffer) => void;
  reseal?: boolean;
  message: RegExp;
  at4096?: boolean;
}[] = [
  {
    title: 'a super sector whose checksum is wrong is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt32LE((b.readUInt32LE(4) ^ 0x100) >>> 0, 4),
    reseal: false,
    message: /checksum/,
  },
  {
    title:
      'a super sector changed past its 104 meaningful bytes fails the checksum that covers the whole block',
    mutate: (b) => (b[300] = 1),
    reseal: false,
    message: /checksum/,
  },
  {
    title: 'a super sector with sector_type 3 is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt16LE(3, 0),
    message: /sector_type is 3/,
  },
  {
    title: 'a super sector with version 1 is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt16LE(1, 2),
    message: /version is 1/,
  },
  {
    title: 'a super sector with logical_bs 4096 is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt32LE(4096, 8),
    message: /logical_bs/,
  },
  {
    title: 'a super sector with physical_bs 1000 (not a multiple of 512) is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt32LE(1000, 12),
    message: /physical block size 1000/,
  },
  {
    title: 'a super sector with physical_bs 8192 (above 4096) is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt32LE(8192, 12),
    message: /physical block size 8192/,
  },
  {
    title: 'a super sector with metadata_size 1 is rejected as CORRUPTION',
    mutate: (b) => b.writeUInt32LE(1, 16),
    message: /metadata_size/,
  },
  {
    title: 'a super sector whose name has no NUL within its 32 bytes is rejected as CORRUPTION',
    mutate: (b) => b.fill(0x61, 40, 72),
    message: /name is not NUL-terminated/,
  },
  {
    title: 'a super sector whose oldest_lsid is beyond written_lsid is rejected as CORRUPTION',
    mutate: (b) => {
      b.writeBigUInt64LE(5n, 80);
      b.writeBigUInt64LE(4n, 88);
    },
    message: /oldest_lsid is beyond written_lsid/,
  },
  {
    title: 'a super sector whose written_lsid is the invalid lsid 2^64-1 is rejected as CORRUPTION',
    mutate: (b) => b.writeBigUInt64LE(U64_MAX, 88),
    message: /lsid invalid/,
  },
  {
    title: 'a super sector with ring_buffer_size 0 is rejected as CORRUPTION',
    mutate: (b) => b.writeBigUInt64LE(0n, 72),
    message: /ring_buffer_size is 0/,
  },
  {
    title: 'a super sector whose ring buffer reaches past the end of the device is rejected as CORRUPTION',
    mutate: (b) => b.writeBigUInt64LE(b.readBigUInt64LE(72) + 1n, 72),
    message: /smaller .* than its ring buffer needs/,
    at4096: false,
  },
];

for (const c of cases) {
  test(c.title, async (t) => {
    for (const pbs of [512, 4096]) {
      const ldev = await ldevWith(pbs, c.mutate, c.reseal !== false);
      const err = await t.throwsAsync(native.readSuper(ldev), { code: 'CORRUPTION', message: c.message });
      t.true(err?.message.includes(ldev), 'the message names the log device');
      if (c.at4096 !== false) t.true(err?.message.includes('at byte 4096'), err?.message);
      await t.throwsAsync(native.ldevExtract(ldev, tmp.name('x.wlog'), {}), { code: 'CORRUPTION' });
      await expectToolFailure(t, ['ldev', 'show', ldev], {
        code: 'CORRUPTION',
        file: ldev,
        message: c.message,
      });
    }
  });
}

test('a log device cut inside its super sector is reported as TRUNCATED', async (t) => {
  const ldev = sparseFile(tmp.name('cut'), 1 << 20);
  await native.formatLdev(ldev, { pbs: 512 });
  const block = readRange(ldev, 0, 4096 + 100);
  const cut = tmp.name('cut-ldev');
  fs.writeFileSync(cut, block);
  await t.throwsAsync(native.readSuper(cut), { code: 'TRUNCATED' });
  await expectToolFailure(t, ['ldev', 'show', cut], { code: 'TRUNCATED', file: cut });
});

test('written_lsid - oldest_lsid larger than the ring (overflow) is not corruption (docs/formats.md §1.2)', async (t) => {
  const ldev = await ldevWith(512, (b) => {
    b.writeBigUInt64LE(10n, 80);
    b.writeBigUInt64LE(10n + b.readBigUInt64LE(72) * 3n, 88);
  });
  const s = await native.readSuper(ldev);
  t.true(s.writtenLsid - s.oldestLsid > s.ringBufferSize);
});
