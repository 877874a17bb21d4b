// walb-tool wdiff show --json streams: records are written as they are read, so a wdiff of a quarter million
// records shows in a few MiB of memory (its JSON alone is ~40 MB, and collecting the records first takes more),
// and the output is still one JSON document {header, records}.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { native } from '../../src/native';
import { WALB_TOOL } from '../processes';
import { tempArea } from '../temp-files';

const tmp = tempArea('wdiff-show-stream');
test.after.always(() => tmp.cleanup());

const PEAK_LIMIT_KIB = 24 << 10;

test('wdiff show --json of ~250k records peaks under 24 MiB resident and parses as {header, records}', async (t) => {
  const wlog = tmp.name('many.wlog');
  const wdiff = tmp.name('many.wdiff');
  await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: 8 << 20, // LB: 4 GiB
    amount: 128 << 20,
    minIoSize: 1,
    maxIoSize: 1,
    seed: 3,
  });
  const converted = await native.wlogToWdiff([wlog], wdiff, {});
  // GNU time reports the peak resident set of walb-tool (in KiB) into its own file.
  const peakFile = tmp.name('peak');
  const child = spawn(
    '/usr/bin/time',
    ['-f', '%M', '-o', peakFile, WALB_TOOL, 'wdiff', 'show', wdiff, '--json'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.is(code, 0, stderr);
  const output = Buffer.concat(chunks);
  const peakKiB = Number(fs.readFileSync(peakFile, 'utf8').trim());
  t.true(peakKiB > 0 && peakKiB < PEAK_LIMIT_KIB, `peak ${peakKiB} KiB for ${output.length} bytes of JSON`);
  const shown = JSON.parse(output.toString()) as {
    header: { type: string };
    records: { address: number }[];
  };
  t.is(shown.header.type, 'sorted');
  t.true(shown.records.length > 200_000, `${shown.records.length} records`);
  t.is(shown.records.length, converted.records);
  t.true(
    shown.records.every((r, i) => i === 0 || shown.records[i - 1].address < r.address),
    'in address order',
  );
});
