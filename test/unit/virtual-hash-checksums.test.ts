// `walbc verify` hashes a snapshot through VirtualFull.hash (docs/servers.md §6.9): that path must check the
// checksum of every record it meets, also of records a newer wdiff of the chain overwrites entirely (the bytes
// never reach the image, but the archive holds them and a restore would apply them). One flipped byte in the
// stored data of any record, sorted or indexed, fails the hash with CORRUPTION naming the file.
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { allRecords } from '../addon-readers';
import { LB } from '../format-oracle';
import { prngBytes, tempArea, writeImage } from '../temp-files';

const tmp = tempArea('virtual-hash-checksums');
test.after.always(() => tmp.cleanup());

const DEVICE_LB = 4096;

async function hashOf(base: string, diffs: string[]): Promise<string> {
  const image = new native.VirtualFull(base, diffs);
  try {
    return (await image.hash()).whole.toString('hex');
  } finally {
    image.close();
  }
}

/** An older sorted and an older indexed wdiff, both wholly overwritten by a newer one. */
async function shadowedChain(): Promise<{ base: string; sorted: string; indexed: string; newest: string }> {
  const base = writeImage(tmp.name('base.img'), DEVICE_LB * LB, 5);
  const sorted = tmp.name('older-sorted.wdiff');
  const indexed = tmp.name('older-indexed.wdiff');
  for (const [file, indexedLayout, seed] of [
    [sorted, false, 6],
    [indexed, true, 7],
  ] as const) {
    const wlog = tmp.name('w.wlog');
    await native.wlogGen(wlog, { pbs: 512, deviceSize: DEVICE_LB, amount: 256 << 10, seed });
    await native.wlogToWdiff([wlog], file, { indexed: indexedLayout });
  }
  const newest = tmp.name('newest.wdiff');
  const w = new native.SortedWdiffWriter(newest, { compression: 'none' });
  await w.add(0, prngBytes(8, DEVICE_LB * LB));
  await w.close();
  return { base, sorted, indexed, newest };
}

test('the hash of a virtual image checks the records a newer wdiff overwrites: a flipped data byte fails it', async (t) => {
  const { base, sorted, indexed, newest } = await shadowedChain();
  const good = await hashOf(base, [sorted, indexed, newest]);
  t.is(good, await hashOf(base, [newest]), 'the older wdiffs do not show in the image');
  for (const file of [sorted, indexed]) {
    const records = (await allRecords(file)).filter((r) => r.kind === 'normal' && r.dataSize > 0);
    t.true(records.length > 2, `${file} has records with data`);
    const bytes = fs.readFileSync(file);
    for (const r of [records[0], records[records.length >> 1], records[records.length - 1]]) {
      const flipped = Buffer.from(bytes);
      flipped[r.dataOffset + (r.dataSize >> 1)] ^= 0x10;
      const bad = tmp.name('flipped.wdiff');
      fs.writeFileSync(bad, flipped);
      const chain = file === sorted ? [bad, indexed, newest] : [sorted, bad, newest];
      const err = await t.throwsAsync(hashOf(base, chain), { code: 'CORRUPTION' });
      t.true(err?.message.includes(bad), `the message names the file: ${err?.message}`);
    }
  }
});
