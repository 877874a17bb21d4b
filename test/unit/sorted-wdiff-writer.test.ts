// The addon's SortedWdiffWriter, the archive's end of a hash backup (docs/servers.md §7.6): records added one by one
// make a sorted wdiff that verifies and redoes to the same image; an all-zero chunk is stored as ALLZERO; records
// out of order are refused; abort() leaves nothing under the path.
import test from 'ava';
import fs from 'node:fs';
import { native, readWdiffHeader } from '../../src/native';
import { prngBytes, tempArea } from '../temp-files';

const tmp = tempArea('wdiff-writer');
test.after.always(() => tmp.cleanup());

test('chunks added in address order make a sorted wdiff that redoes them onto an image', async (t) => {
  const out = tmp.name('hash.wdiff');
  const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
  const w = new native.SortedWdiffWriter(out, { uuid });
  const chunks = [
    { offset: 0, data: prngBytes(1, 256 << 10) },
    { offset: 1 << 20, data: Buffer.alloc(256 << 10) },
    { offset: 3 << 20, data: prngBytes(2, 4096) },
  ];
  for (const c of chunks) await w.add(c.offset, c.data);
  const stats = await w.close();
  t.true(stats.records >= 3);
  t.is(stats.fileBytes, fs.statSync(out).size);
  const verified = await native.wdiffVerify(out);
  t.is(verified.allZeroBlocks, (256 << 10) / 512, 'the zero chunk is an ALLZERO record');
  t.deepEqual(readWdiffHeader(out), { type: 'sorted', uuid: uuid.toString('hex') });

  const image = tmp.name('image');
  fs.writeFileSync(image, prngBytes(3, 4 << 20));
  const expected = fs.readFileSync(image);
  for (const c of chunks) c.data.copy(expected, c.offset);
  await native.wdiffRedo(out, image, {});
  t.true(fs.readFileSync(image).equals(expected));
});

test('a record before the previous one is refused; abort leaves no file', async (t) => {
  const out = tmp.name('bad.wdiff');
  const w = new native.SortedWdiffWriter(out);
  await w.add(1 << 20, prngBytes(4, 4096));
  await t.throwsAsync(w.add(0, prngBytes(5, 4096)), { code: 'INVALID_ARGUMENT', message: /address order/ });
  t.throws(() => w.add(513, Buffer.alloc(512)), { code: 'INVALID_ARGUMENT', message: /multiples of 512/ });
  w.abort();
  t.throws(() => w.add(2 << 20, Buffer.alloc(512)), { code: 'INVALID_ARGUMENT', message: /closed/ });
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(
    fs.readdirSync(tmp.dir).filter((n) => n.includes('bad.wdiff')),
    [],
    'neither the file nor its temporary remains',
  );
});
