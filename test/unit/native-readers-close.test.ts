// close() of the addon's reader objects (WlogFile, WdiffFile, VirtualFull): it releases their files at once,
// twice is harmless, a call after it fails with INVALID_ARGUMENT instead of crashing, and a close while a call runs
// lets the call finish and releases the files when it settles.
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { openFiles } from '../processes';
import { tempArea, writeImage } from '../temp-files';

const tmp = tempArea('close');
test.after.always(() => tmp.cleanup());

const DEVICE = 4 << 20;

/** Descriptors of this process open on any of `files`. */
function openOn(...files: string[]): number {
  return openFiles(process.pid).filter((f) => files.includes(f)).length;
}

async function makeFiles() {
  const wlog = tmp.name('a.wlog');
  await native.wlogGen(wlog, { deviceSize: DEVICE / 512, amount: 1 << 20, seed: 7 });
  const sorted = tmp.name('a.wdiff');
  await native.wlogToWdiff([wlog], sorted, {});
  const indexed = tmp.name('i.wdiff');
  await native.wlogToWdiff([wlog], indexed, { indexed: true });
  const base = writeImage(tmp.name('base.img'), DEVICE, 3);
  return { wlog, sorted, indexed, base };
}

// Serial: the tests count this process's descriptors on shared files.
const files = makeFiles();

test.serial(
  'close() releases the files of each reader at once, and a second close() does nothing',
  async (t) => {
    const { wlog, sorted, indexed, base } = await files;
    const readers = [
      { files: [wlog], open: () => new native.WlogFile(wlog) },
      { files: [sorted], open: () => new native.WdiffFile(sorted) },
      { files: [indexed], open: () => new native.WdiffFile(indexed) },
      { files: [base, sorted, indexed], open: () => new native.VirtualFull(base, [sorted, indexed]) },
    ];
    for (const r of readers) {
      const reader = r.open();
      t.true(openOn(...r.files) >= r.files.length, `${r.files.join(' ')} open while the reader is`);
      reader.close();
      t.is(openOn(...r.files), 0, `${r.files.join(' ')} closed by close()`);
      t.notThrows(() => reader.close(), 'close() twice');
    }
  },
);

test.serial('a closed WlogFile throws INVALID_ARGUMENT from header() and rejects next()', async (t) => {
  const { wlog } = await files;
  const f = new native.WlogFile(wlog);
  f.close();
  t.throws(() => f.header(), { code: 'INVALID_ARGUMENT', message: /WlogFile .*a\.wlog is closed/ });
  const next = f.next();
  t.true(next instanceof Promise, 'next() rejects rather than throws');
  await t.throwsAsync(next, { code: 'INVALID_ARGUMENT', message: /is closed/ });
});

test.serial('a closed WdiffFile throws INVALID_ARGUMENT from header() and rejects next()', async (t) => {
  const { sorted } = await files;
  const f = new native.WdiffFile(sorted);
  f.close();
  t.throws(() => f.header(), { code: 'INVALID_ARGUMENT', message: /WdiffFile .*a\.wdiff is closed/ });
  const next = f.next();
  t.true(next instanceof Promise, 'next() rejects rather than throws');
  await t.throwsAsync(next, { code: 'INVALID_ARGUMENT' });
});

test.serial(
  'a closed VirtualFull throws INVALID_ARGUMENT from size() and rejects read() and hash()',
  async (t) => {
    const { base, sorted } = await files;
    const v = new native.VirtualFull(base, [sorted]);
    v.close();
    t.throws(() => v.size(), { code: 'INVALID_ARGUMENT', message: /VirtualFull of .*base\.img is closed/ });
    const read = v.read({ offset: 0, length: 4096 });
    t.true(read instanceof Promise, 'read() rejects rather than throws');
    await t.throwsAsync(read, { code: 'INVALID_ARGUMENT' });
    await t.throwsAsync(v.hash(), { code: 'INVALID_ARGUMENT' });
  },
);

test.serial(
  'close() while next() runs: the call completes with every record, then the file is released',
  async (t) => {
    const { indexed } = await files;
    const whole = new native.WdiffFile(indexed);
    const want = await whole.next(1 << 20);
    whole.close();
    t.true(want.length > 0);

    const f = new native.WdiffFile(indexed);
    const running = f.next(1 << 20);
    f.close();
    t.is(openOn(indexed), 1, 'the running call keeps the file');
    t.deepEqual(await running, want);
    t.is(openOn(indexed), 0, 'released when the call settled');
    await t.throwsAsync(f.next(), { code: 'INVALID_ARGUMENT' });
  },
);

test.serial(
  'close() while read() and hash() run: both complete with the right bytes, then the files are released',
  async (t) => {
    const { base, sorted, wlog } = await files;
    const image = writeImage(tmp.name('image'), DEVICE, 3);
    await native.wdiffRedo(sorted, image, {});
    const want = await native.hashImage(image, { chunks: true });

    const v = new native.VirtualFull(base, [sorted]);
    const reading = v.read({ offset: 0, length: DEVICE });
    const hashing = v.hash({ chunks: true });
    v.close();
    t.is(openOn(base, sorted), 2, 'the running calls keep the files');
    const [bytes, hash] = await Promise.all([reading, hashing]);
    t.true(bytes.equals(fs.readFileSync(image)));
    t.true(hash.whole.equals(want.whole));
    t.true(hash.chunks!.equals(want.chunks!));
    t.is(openOn(base, sorted), 0, 'released when the calls settled');

    const w = new native.WlogFile(wlog);
    const packs = w.next(1 << 20);
    w.close();
    t.true((await packs).length > 0);
    t.is(openOn(wlog), 0);
  },
);
