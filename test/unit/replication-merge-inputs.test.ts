// The files a replication's diff step merges (docs/servers.md §7.7, diff step 1): wdiffs with no record (an implicit
// snapshot where an explicit one follows) are left out, so that a run of one wdiff with data and empty ones is sent
// verbatim instead of merged; a small wdiff with records stays, and one file always does.
import test from 'ava';
import { withRecords } from '../../src/archive/replication';
import { native } from '../../src/native';
import { prngBytes, tempArea } from '../temp-files';

const tmp = tempArea('repl-merge-inputs');
test.after.always(() => tmp.cleanup());

async function wdiff(name: string, chunks: { offset: number; data: Buffer }[]): Promise<string> {
  const out = tmp.name(name);
  const w = new native.SortedWdiffWriter(out);
  for (const c of chunks) await w.add(c.offset, c.data);
  await w.close();
  return out;
}

test('empty wdiffs are left out of a merge: one wdiff with data and empty ones leaves that one to send verbatim', async (t) => {
  const data = await wdiff('data.wdiff', [{ offset: 0, data: prngBytes(1, 256 << 10) }]);
  const empty1 = await wdiff('empty1.wdiff', []);
  const empty2 = await wdiff('empty2.wdiff', []);
  t.deepEqual(await withRecords([empty1, data, empty2]), [data]);
});

test('a small wdiff with a record stays in the merge', async (t) => {
  const big = await wdiff('big.wdiff', [{ offset: 0, data: prngBytes(2, 1 << 20) }]);
  const small = await wdiff('small.wdiff', [{ offset: 1 << 20, data: prngBytes(3, 4096) }]);
  const empty = await wdiff('empty.wdiff', []);
  t.deepEqual(await withRecords([big, empty, small]), [big, small]);
});

test('a run of empty wdiffs keeps its first one', async (t) => {
  const a = await wdiff('a.wdiff', []);
  const b = await wdiff('b.wdiff', []);
  t.deepEqual(await withRecords([a, b]), [a]);
});
