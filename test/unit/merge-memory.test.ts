// A merge of many wdiffs holds memory by the record, not by the input: merging 128 wdiffs of 1 MiB each (more
// data than the limit) keeps the process's anonymous memory within a few MiB of where it started. An archive's
// merge of a long run of small diffs (docs/servers.md §6.8) is this call; a reader that buffered each input whole,
// or a prefetch thread per input holding its batches, would grow with the number of inputs.
import test from 'ava';
import { native } from '../../src/native';
import { probe } from '../memory-probe';
import { tempArea } from '../temp-files';

const MiB = 1048576;
const INPUTS = 128;
const tmp = tempArea('merge-memory');
test.after.always(() => tmp.cleanup());

test('merging 128 wdiffs of 1 MiB each keeps anonymous memory under 48 MiB above the start', async (t) => {
  const inputs: string[] = [];
  for (let i = 0; i < INPUTS; i++) {
    const wlog = tmp.name(`${i}.wlog`);
    await native.wlogGen(wlog, { deviceSize: (256 * MiB) / 512, amount: MiB, maxIoSize: 128, seed: i + 1 });
    const wdiff = tmp.name(`${i}.wdiff`);
    await native.wlogToWdiff([wlog], wdiff, {});
    inputs.push(wdiff);
  }
  const out = tmp.name('merged.wdiff');
  const r = await probe(['wdiffMerge', inputs, out]);
  t.is(r.code, 'ok', r.message);
  const merged = await native.wdiffVerify(out);
  t.true(merged.records > 0, 'the merge wrote records');
  const grew = r.anonPeak - r.anonBefore;
  t.log(
    `anonymous memory: ${(r.anonBefore / MiB).toFixed(1)} MiB before, peak ${(r.anonPeak / MiB).toFixed(1)} MiB`,
  );
  t.true(
    grew <= 48 * MiB,
    `anonymous memory grew by ${(grew / MiB).toFixed(1)} MiB during the merge (limit 48 MiB)`,
  );
});
