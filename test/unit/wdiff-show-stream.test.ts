// walb-tool wdiff show --json streams: records are written as they are read, so a wdiff of a quarter million
// records shows under a 16 MiB JavaScript heap (collecting them first needs several times that), and the output
// is still one JSON document {header, records}.
import test from 'ava';
import { spawn } from 'node:child_process';
import { native } from '../../src/native';
import { WALB_TOOL } from '../processes';
import { tempArea } from '../temp-files';

const tmp = tempArea('wdiff-show-stream');
test.after.always(() => tmp.cleanup());

test('wdiff show --json of ~250k records runs in a 16 MiB heap and parses as {header, records}', async (t) => {
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
  const child = spawn(
    process.execPath,
    ['--max-old-space-size=16', WALB_TOOL, 'wdiff', 'show', wdiff, '--json'],
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
  const shown = JSON.parse(Buffer.concat(chunks).toString()) as {
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
