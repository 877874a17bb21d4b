// walb-tool virt-full-cat into a block device: every chunk is written at its offset, zeros included, since the
// device's old bytes stay wherever nothing is written (into a regular file, zero chunks are skipped: the file is
// emptied first and stays sparse); a device smaller than the image is refused before anything is written.
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { readVirtualFull } from '../addon-readers';
import { expectToolFailure, runTool } from '../processes';
import { firstDiff, tempArea, writeImage } from '../temp-files';
import { withLoop } from '../walb-oracle';

const tmp = tempArea('virt-full-cat-device');
test.after.always(() => tmp.cleanup());

const IMAGE = 16 << 20;
const WRITTEN = 4 << 20; // the workload writes the first 4 MiB: the chunks after it are all zeros

test('virt-full-cat onto a loop device overwrites its old bytes, zero ranges too; a small device is refused', async (t) => {
  const base = writeImage(tmp.name('base.img'), IMAGE);
  const wlog = tmp.name('w.wlog');
  await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: WRITTEN / 512,
    amount: 1 << 20,
    allZeroRatio: 0.2,
    seed: 5,
  });
  const wdiff = tmp.name('w.wdiff');
  await native.wlogToWdiff([wlog], wdiff, {});
  const want = await readVirtualFull(base, [wdiff]);
  t.true(
    want.subarray(WRITTEN).every((b) => b === 0),
    'the image ends in 12 MiB of zeros',
  );

  const backing = tmp.name('device.img');
  fs.writeFileSync(backing, Buffer.alloc(2 * IMAGE, 0xab)); // old bytes everywhere
  await withLoop(backing, 512, async (dev) => {
    const r = await runTool(['virt-full-cat', base, wdiff, '-o', dev]);
    t.is(r.code, 0, r.stderr);
  });
  const written = fs.readFileSync(backing);
  t.is(firstDiff(written.subarray(0, IMAGE), want), -1, 'the device holds the image');
  t.true(
    written.subarray(IMAGE).every((b) => b === 0xab),
    'nothing past the image is written',
  );

  const small = tmp.name('small.img');
  fs.writeFileSync(small, Buffer.alloc(IMAGE / 2, 0xab));
  await withLoop(small, 512, async (dev) => {
    await expectToolFailure(t, ['virt-full-cat', base, wdiff, '-o', dev], {
      code: 'INVALID_ARGUMENT',
      exit: 2,
    });
  });
  t.true(
    fs.readFileSync(small).every((b) => b === 0xab),
    'the small device is untouched',
  );
});
