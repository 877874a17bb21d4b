// Golden vectors for the log device super sector (docs/formats.md §1.1-1.3). The expected block is built here with Buffer
// writes at the offsets of the table of docs/formats.md §1.2 (sector_type u16 @0, version u16 @2, checksum u32 @4, logical_bs
// @8, physical_bs @12, metadata_size @16, salt @20, uuid @24, name @40, ring_buffer_size u64 @72, oldest @80,
// written @88, device_size @96, zero to the end of the pbs block), its checksum computed by the plain-JS csum with
// salt 0; only the random salt and uuid are taken from what formatLdev reports.
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { buildSuperSector, csum } from '../format-oracle';
import { expectToolFailure, runTool } from '../processes';
import { firstDiff, prngBytes, sparseFile, tempArea } from '../temp-files';

const tmp = tempArea('golden-ldev');
test.after.always(() => tmp.cleanup());

const expectedSuper = buildSuperSector;

for (const [pbs, rbOffset] of [
  [512, 10],
  [4096, 3],
] as const) {
  test(`formatLdev (pbs ${pbs}) writes super sector 0 at byte 4096 exactly as docs/formats.md §1.2 and touches nothing else`, async (t) => {
    // An odd size with a partial last PB: the ring is floor(size/pbs) - RB PB, RB = 4096/pbs + 2.
    const size = (1 << 20) + 4095;
    const file = tmp.name(`ldev-${pbs}`);
    const before = prngBytes(pbs, size);
    fs.writeFileSync(file, before);
    const name = 'vol-0123456789abcdefghijk'; // 25 characters, the driver's limit
    const s = await native.formatLdev(file, { pbs, deviceSize: 123456789, name });
    const ring = Math.floor(size / pbs) - rbOffset;
    t.is(s.pbs, pbs);
    t.is(s.ringBufferOffset, rbOffset, 'ring buffer starts at PB 4096/pbs + 2');
    t.is(s.ringBufferOffset * pbs, pbs === 512 ? 5120 : 12288, 'ring buffer byte offset');
    t.is(s.ringBufferSize, ring);
    t.is(s.name, name);
    t.is(s.deviceSize, 123456789);
    t.is(s.oldestLsid, 0);
    t.is(s.writtenLsid, 0);

    const after = fs.readFileSync(file);
    t.is(after.length, size);
    const block = after.subarray(4096, 4096 + pbs);
    t.is(block.readUInt16LE(0), 1, 'sector_type @0');
    t.is(block.readUInt16LE(2), 2, 'version @2');
    t.is(block.readUInt32LE(8), 512, 'logical_bs @8');
    t.is(block.readUInt32LE(12), pbs, 'physical_bs @12');
    t.is(block.readUInt32LE(16), 0, 'metadata_size @16');
    t.is(block.readUInt32LE(20), s.salt, 'log_checksum_salt @20');
    t.is(block.subarray(24, 40).toString('hex'), s.uuid, 'uuid @24');
    t.is(
      block.subarray(40, 72).toString('latin1'),
      name + '\0'.repeat(32 - name.length),
      'name @40, NUL-padded',
    );
    t.is(block.readBigUInt64LE(72), BigInt(ring), 'ring_buffer_size @72');
    t.is(block.readBigUInt64LE(80), 0n, 'oldest_lsid @80');
    t.is(block.readBigUInt64LE(88), 0n, 'written_lsid @88');
    t.is(block.readBigUInt64LE(96), 123456789n, 'device_size @96');
    t.true(
      block.subarray(104).every((x) => x === 0),
      'the rest of the block is zero',
    );
    t.is(csum(block, 0), 0, 'the self-checksum over the whole pbs block with salt 0 sums to 0');
    const want = expectedSuper(pbs, { salt: s.salt, uuid: s.uuid, name, ring, deviceSize: 123456789 });
    t.is(firstDiff(block, want), -1, 'the block equals the hand-built golden block');

    // Only super sector 0 is written: the reserved page, super sector 1 and the ring are untouched.
    t.is(firstDiff(after.subarray(0, 4096), before.subarray(0, 4096)), -1, 'reserved area untouched');
    t.is(
      firstDiff(after.subarray(4096 + pbs), before.subarray(4096 + pbs)),
      -1,
      'super sector 1 and ring untouched',
    );

    const back = await native.readSuper(file);
    t.deepEqual(back, s, 'readSuper gives back what formatLdev reported');
  });
}

test('ring_buffer_size of a 64 MiB ldev is 131062 PB with pbs 512 and 16381 PB with pbs 4096 (docs/formats.md §1.1)', async (t) => {
  for (const [pbs, ring] of [
    [512, 131062],
    [4096, 16381],
  ]) {
    const file = sparseFile(tmp.name(`ldev64-${pbs}`), 64 << 20);
    const s = await native.formatLdev(file, { pbs });
    t.is(s.ringBufferSize, ring);
    t.is(
      fs
        .readFileSync(file)
        .subarray(4096 + 72, 4096 + 80)
        .readBigUInt64LE(0),
      BigInt(ring),
    );
  }
});

test('ldev show prints the super sector that formatLdev wrote', async (t) => {
  const file = sparseFile(tmp.name('ldev-show'), 2 << 20);
  const s = await native.formatLdev(file, { pbs: 4096, name: 'walb0', deviceSize: 2048 });
  const r = await runTool(['ldev', 'show', file, '--json']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), s);
  const human = await runTool(['ldev', 'show', file]);
  t.is(human.code, 0, human.stderr);
  t.true(human.stdout.includes(`ring buffer ${s.ringBufferSize} PB at PB 3`), human.stdout);
});

test('each format draws a new uuid and salt (a new log stream)', async (t) => {
  const file = sparseFile(tmp.name('ldev-twice'), 1 << 20);
  const a = await native.formatLdev(file, { pbs: 512 });
  const b = await native.formatLdev(file, { pbs: 512 });
  t.not(a.uuid, b.uuid);
  t.not(a.salt, b.salt);
});

test('an empty name is stored as 32 NUL bytes; a name longer than 25 characters is refused', async (t) => {
  const file = sparseFile(tmp.name('ldev-name'), 1 << 20);
  const s = await native.formatLdev(file, { pbs: 512 });
  t.is(s.name, '');
  t.true(
    fs
      .readFileSync(file)
      .subarray(4096 + 40, 4096 + 72)
      .every((x) => x === 0),
  );
  await t.throwsAsync(native.formatLdev(file, { pbs: 512, name: 'x'.repeat(26) }), {
    code: 'INVALID_ARGUMENT',
  });
});

test('an ldev with no room for a ring buffer is refused as INVALID_ARGUMENT, and an unformatted one reads as CORRUPTION', async (t) => {
  // pbs 4096: RB = 3, so a 3-PB file has a ring of 0 PB.
  const file = sparseFile(tmp.name('ldev-tiny'), 3 * 4096 + 4095);
  await t.throwsAsync(native.formatLdev(file, { pbs: 4096 }), {
    code: 'INVALID_ARGUMENT',
    message: /too small/,
  });
  await t.throwsAsync(native.formatLdev(tmp.name('missing'), { pbs: 512 }), { code: 'NOT_FOUND' });
  await expectToolFailure(t, ['ldev', 'show', file], { code: 'CORRUPTION', file });
});
