// The one help style of walbc, wdevc (src/common/cli.ts) and the native walb-tool (native/src/tool/cli.cpp): every
// option described, real placeholder names, usage lines that show the options; --version; an unknown command
// answered in one line with the closest name; the progress line with bytes, rate and ETA.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import {
  closestCommand,
  editDistance,
  formatDuration,
  progressLine,
  usageOf,
  type Command,
} from '../../src/common/cli';
import { walbcCommands } from '../../src/controller/walbc-commands';
import { wdevcCommands } from '../../src/wdev/wdevc-commands';
import { ROOT, run, runTool } from '../processes';

const tools: [string, Command[]][] = [
  ['walbc', walbcCommands],
  ['wdevc', wdevcCommands],
];

test('every option of every command is described, and no help says VALUE', (t) => {
  for (const [tool, commands] of tools)
    for (const c of commands) {
      for (const name of Object.keys(c.options ?? {}))
        t.truthy(c.optionHelp?.[name], `${tool} ${c.name} --${name} has no description`);
      t.notRegex(usageOf(tool, c), /\bVALUE\b/, `${tool} ${c.name}`);
    }
});

test('the usage line shows the arguments and every option with its placeholder', (t) => {
  const stop = walbcCommands.find((c) => c.name === 'stop')!;
  const usage = usageOf('walbc', stop);
  t.regex(usage, /^usage: walbc stop VOL SERVER \[-l FILE\] \[--json\] \[-w\] \[--mode MODE\]$/m);
  t.regex(usage, /^ {2}-l, --layout FILE +layout file/m);
  t.regex(usage, /^ {2}-h, --help +print this help$/m);
  const status = walbcCommands.find((c) => c.name === 'get-restorable')!;
  t.regex(usageOf('walbc', status), /\[--archive ID\]/);
});

test('closestCommand suggests the name within a typo, also of two-word commands, and nothing for garbage', (t) => {
  t.is(editDistance('staus', 'status'), 1);
  const walbc = walbcCommands.map((c) => c.name);
  t.is(closestCommand(walbc, ['staus']), 'status');
  t.is(closestCommand(walbc, ['full-bakup', 'vol0']), 'full-backup');
  t.is(closestCommand(walbc, ['zzzzzzzzzzzz']), undefined);
});

test('progressLine: bytes done of total, percentage, rate and ETA', (t) => {
  t.is(
    progressLine('full-backup', 256 << 20, 1 << 30, 4),
    'full-backup: 256.0 MiB of 1.00 GiB, 25.0%, 64.0 MiB/s, ETA 12s',
  );
  t.is(progressLine('x', 0, 100, 0), 'x: 0 B of 100 B, 0.0%');
  t.is(progressLine('stop', 3, 4, 1, 'count'), 'stop: 3 of 4, 75.0%, 3/s, ETA 1s');
  t.is(formatDuration(75), '1m15s');
  t.is(formatDuration(3700), '1h01m');
});

/** The names of walb-tool's commands, from its overview. */
async function toolCommandNames(): Promise<string[]> {
  const r = await runTool(['--help']);
  const list = r.stdout.split('commands:\n')[1].split('\n\n')[0];
  return list.split('\n').map((line) => line.trim().split(/\s{2,}/)[0]);
}

test("walb-tool's help of every command describes every option, with real placeholders", async (t) => {
  const names = await toolCommandNames();
  t.true(names.includes('wdiff redo') && names.length >= 14, names.join(', '));
  for (const name of names) {
    const r = await runTool([...name.split(' '), '--help']);
    t.is(r.code, 0, `${name}: ${r.stderr}`);
    t.regex(r.stdout, new RegExp(`^usage: walb-tool ${name} `), name);
    t.notRegex(r.stdout, /\bVALUE\b/, name);
    const rows = r.stdout
      .split('options:\n')[1]
      .split('\n')
      .filter((l) => l.trim() !== '');
    for (const row of rows) t.regex(row, /^ {2}(-\w, | {4})--[\w-]+( [A-Z_|]+)? {2,}\S/, `${name}: '${row}'`);
  }
  const merge = await runTool(['wdiff', 'merge', '--help']);
  t.regex(
    merge.stdout,
    /^usage: walb-tool wdiff merge OLDEST\.wdiff \.\.\. NEWEST\.wdiff -o OUT\.wdiff \[--compression CODEC\]/m,
  );
  t.regex(merge.stdout, /^ {2}-o, --output PATH +the wdiff to write$/m);
});

test('walb-tool answers a typo with the closest command, also of two-word commands, exit 2', async (t) => {
  const r = await runTool(['wdif', 'show', 'x']);
  t.is(r.code, 2);
  t.is(r.stdout, '');
  t.is(
    r.stderr,
    "walb-tool: unknown command 'wdif show'; did you mean 'wdiff show'? ('walb-tool --help' lists them)\n",
  );
});

const bins = ['walb-storage', 'walb-proxy', 'walb-archive', 'walb-wdevd', 'walbc', 'wdevc'];
test('every binary answers --version with the version of package.json', async (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  for (const bin of bins) {
    const r = await run(process.execPath, [path.join(ROOT, 'dist', 'src', 'bin', `${bin}.js`), '--version']);
    t.is(r.code, 0, `${bin}: ${r.stderr}`);
    t.is(r.stdout, `${bin} ${version}\n`);
  }
  const tool = await runTool(['--version']);
  t.is(tool.stdout, `walb-tool ${version}\n`, tool.stderr);
});

test('an unknown command is answered in one line with the closest command, exit 2', async (t) => {
  const r = await run(process.execPath, [path.join(ROOT, 'dist', 'src', 'bin', 'walbc.js'), 'staus']);
  t.is(r.code, 2);
  t.is(r.stdout, '');
  t.is(r.stderr, "walbc: unknown command 'staus'; did you mean 'status'? ('walbc --help' lists them)\n");
});
