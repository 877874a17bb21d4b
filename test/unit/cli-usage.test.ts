// walb-tool's exit statuses (README: 0 done, 1 the operation failed, 2 bad usage) and the addon's handling of bad
// arguments: wrong calls are reported, never crash the process.
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { expectToolFailure, runTool } from '../processes';
import { tempArea, writeImage } from '../temp-files';

const tmp = tempArea('cli-usage');
test.after.always(() => tmp.cleanup());

let wlog = '';
test.before(async () => {
  wlog = tmp.name('ok.wlog');
  await native.wlogGen(wlog, { pbs: 512, deviceSize: 2048, amount: 32 << 10, seed: 1 });
});

const usage: [string, string[], RegExp][] = [
  ['walb-tool without a command exits 2 and lists the commands', [], /commands:/],
  ['walb-tool with an unknown command exits 2', ['wlog', 'frobnicate'], /unknown command/],
  ['wlog verify without its file exits 2', ['wlog', 'verify'], /wrong number of arguments/],
  ['wdiff verify with two files exits 2', ['wdiff', 'verify', 'a', 'b'], /wrong number of arguments/],
  ['an unknown option exits 2', ['wlog', 'verify', 'x.wlog', '--frobnicate'], /Unknown option/],
  ['wlog to-wdiff without -o exits 2 as USAGE', ['wlog', 'to-wdiff', 'x.wlog'], /\[USAGE\]/],
  [
    'an unknown compression exits 2 as USAGE',
    ['wlog', 'to-wdiff', 'x.wlog', '-o', 'y', '--compression', 'rar'],
    /\[USAGE\]/,
  ],
  [
    'an unknown discard mode exits 2 as USAGE',
    ['wdiff', 'redo', 'x.wdiff', 'img', '--discard', 'maybe'],
    /\[USAGE\]/,
  ],
  ['a size that is not a size exits 2', ['wlog', 'gen', '-o', 'x.wlog', '--size', 'big'], /size/],
];
for (const [title, args, message] of usage) {
  test(title, async (t) => {
    const r = await runTool(args);
    t.is(r.signal, null);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stdout + r.stderr, message);
  });
}

test('an impossible request to the addon (pbs 1000) exits 2 as INVALID_ARGUMENT', async (t) => {
  await expectToolFailure(t, ['wlog', 'gen', '-o', tmp.name('x.wlog'), '--pbs', '1000', '--amount', '4K'], {
    code: 'INVALID_ARGUMENT',
    exit: 2,
  });
  await expectToolFailure(t, ['hash', wlog, '--chunk', '1000'], { code: 'INVALID_ARGUMENT', exit: 2 });
});

test('options take their value as -oVALUE, -o VALUE, --output=VALUE or --output VALUE; a flag takes none', async (t) => {
  for (const form of [
    ['-o' + tmp.name('a.wdiff')],
    ['-o', tmp.name('b.wdiff')],
    [`--output=${tmp.name('c.wdiff')}`],
  ]) {
    const r = await runTool(['wlog', 'to-wdiff', wlog, ...form, '--json']);
    t.is(r.code, 0, r.stderr);
    t.true(fs.existsSync(form.join('').replace(/^(-o|--output=)/, '')), form.join(' '));
  }
  const flagged = await runTool(['wlog', 'verify', wlog, '--json=1']);
  t.is(flagged.code, 2);
  t.regex(flagged.stderr, /Option '--json' does not take an argument/);
  const ambiguous = await runTool(['wlog', 'to-wdiff', wlog, '-o', '--json']);
  t.is(ambiguous.code, 2);
  t.regex(ambiguous.stderr, /argument is ambiguous/);
  const missing = await runTool(['wlog', 'to-wdiff', wlog, '-o']);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /argument missing/);
  // After --, an argument that starts with a dash is a positional: here a file that does not exist.
  await expectToolFailure(t, ['wlog', 'verify', '--', '-x.wlog'], { code: 'NOT_FOUND', file: '-x.wlog' });
});

test('--help prints the usage of a command and exits 0', async (t) => {
  const r = await runTool(['wdiff', 'merge', '--help']);
  t.is(r.code, 0);
  t.regex(r.stdout, /usage: walb-tool wdiff merge/);
});

test('a missing input file exits 1 as NOT_FOUND and names the file', async (t) => {
  const missing = tmp.name('missing.wlog');
  await expectToolFailure(t, ['wlog', 'verify', missing], { code: 'NOT_FOUND', file: missing });
  await expectToolFailure(t, ['wdiff', 'show', missing], { code: 'NOT_FOUND', file: missing });
  await expectToolFailure(t, ['wlog', 'extract', missing, '-o', tmp.name('o.wlog')], {
    code: 'NOT_FOUND',
    file: missing,
  });
});

test('a redo onto an image too small for the log fails cleanly (exit 2, INVALID_ARGUMENT) instead of growing it', async (t) => {
  const image = writeImage(tmp.name('small.img'), 64 << 10);
  await expectToolFailure(t, ['wlog', 'redo', wlog, image], {
    code: 'INVALID_ARGUMENT',
    exit: 2,
    message: /beyond the end/,
  });
  t.is(fs.statSync(image).size, 64 << 10);
});

test('the addon throws INVALID_ARGUMENT for arguments of the wrong type, and NOT_FOUND for missing files', async (t) => {
  const bad = native as unknown as Record<string, (...args: unknown[]) => unknown>;
  t.throws(() => bad.wlogVerify(42), { code: 'INVALID_ARGUMENT' });
  t.throws(() => bad.wlogToWdiff('x', 'y', {}), { code: 'INVALID_ARGUMENT' });
  t.throws(() => bad.wdiffMerge([wlog], tmp.name('m.wdiff'), { compression: 'rar' }), {
    code: 'INVALID_ARGUMENT',
  });
  t.throws(() => bad.wlogRedo(wlog, 'img', { discard: 'maybe' }), { code: 'INVALID_ARGUMENT' });
  t.throws(() => new native.WdiffFile(tmp.name('missing.wdiff')), { code: 'NOT_FOUND' });
  t.throws(() => new native.WlogFile(tmp.name('missing.wlog')), { code: 'NOT_FOUND' });
  await t.throwsAsync(native.wdiffVerify(wlog), { code: 'CORRUPTION' }, 'a wlog is not a wdiff');
  await t.throwsAsync(native.wlogVerify(tmp.name('missing.wlog')), { code: 'NOT_FOUND' });
});
