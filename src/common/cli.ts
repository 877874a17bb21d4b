// The shared frame of every command-line tool: subcommand dispatch, option parsing with node:util, help in one
// style, --version, exit codes (0 done, 1 the operation failed, 2 bad usage) and error printing with the stable
// code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { WalbError, errorCode, errorMessage } from './errors';
import { formatBytes } from './units';
import { versionLine } from './version';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** e.g. "wlog to-wdiff" */
  name: string;
  args: string; // usage of the positionals, e.g. "IN.wlog... -o OUT.wdiff"
  summary: string;
  options?: Options;
  /** What each option does: every option has an entry. */
  optionHelp?: Record<string, string>;
  /** The placeholder of a string option's value in the help (default: its name in capitals, e.g. MODE). */
  placeholders?: Record<string, string>;
  minArgs?: number;
  maxArgs?: number;
  run(args: string[], values: Values): Promise<void>;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The placeholder of a string option's value, e.g. FILE for --layout. */
function placeholderOf(c: Command, name: string): string {
  return c.placeholders?.[name] ?? name.toUpperCase().replace(/-/g, '_');
}

/** `--name VALUE` (or `-s VALUE`) as a usage line shows it. */
function optionForm(c: Command, name: string, o: Options[string], preferShort: boolean): string {
  const flag = preferShort && o.short ? `-${o.short}` : `--${name}`;
  return o.type === 'string' ? `${flag} ${placeholderOf(c, name)}` : flag;
}

/** Wraps `words` after `head` at 100 columns, continuation lines indented under the first word. */
function wrapUsage(head: string, words: string[]): string[] {
  const lines: string[] = [];
  let line = head;
  for (const w of words) {
    if (line.length + 1 + w.length > 100 && line.trim() !== '') {
      lines.push(line);
      line = ' '.repeat(Math.min(head.length, 40)) + w;
    } else line += ` ${w}`;
  }
  lines.push(line);
  return lines;
}

export function usageOf(tool: string, c: Command): string {
  const opts = Object.entries(c.options ?? {});
  // An option the arguments already show (e.g. "-o OUT.wdiff") is not repeated.
  const argWords = new Set(c.args.split(/\s+/));
  const shown = opts.filter(
    ([name, o]) => !argWords.has(`--${name}`) && !(o.short && argWords.has(`-${o.short}`)),
  );
  const words = [
    ...(c.args ? [c.args] : []),
    ...shown.map(([name, o]) => `[${optionForm(c, name, o, true)}]`),
  ];
  const lines = [...wrapUsage(`usage: ${tool} ${c.name}`, words), '', c.summary, '', 'options:'];
  const rows: [string, string][] = opts.map(([name, o]) => [
    `${o.short ? `-${o.short}, ` : '    '}${optionForm(c, name, o, false)}`,
    c.optionHelp?.[name] ?? '',
  ]);
  rows.push(['-h, --help', 'print this help']);
  const width = Math.max(26, ...rows.map(([f]) => f.length));
  for (const [flag, help] of rows) lines.push(`  ${flag.padEnd(width)}  ${help}`.trimEnd());
  return lines.join('\n');
}

function overview(tool: string, description: string, commands: Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `usage: ${tool} COMMAND [OPTIONS] [ARGS]`,
    `       ${tool} --version`,
    '',
    description,
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    `Run '${tool} COMMAND --help' for the options of a command.`,
  ].join('\n');
}

/** Levenshtein distance between two short strings. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The command name closest to what was typed (compared with as many words as the name has), or undefined when
 * nothing is close enough to be a typo.
 */
export function closestCommand(names: readonly string[], argv: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const typed = argv.slice(0, name.split(' ').length).join(' ');
    const d = editDistance(typed, name);
    if (!best || d < best.d) best = { name, d };
  }
  return best && best.d <= Math.max(2, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

export function usageError(message: string): WalbError {
  return new WalbError('USAGE', message);
}

/** Runs one invocation and returns the exit code; never throws. */
export async function runCli(
  tool: string,
  description: string,
  commands: Command[],
  argv: string[],
): Promise<number> {
  const sorted = [...commands].sort((a, b) => b.name.split(' ').length - a.name.split(' ').length);
  const cmd = sorted.find((c) => {
    const words = c.name.split(' ');
    return words.every((w, i) => argv[i] === w);
  });
  if (!cmd) {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      process.stdout.write(overview(tool, description, commands) + '\n');
      return argv.length === 0 ? EXIT_USAGE : EXIT_OK;
    }
    if (argv[0] === '--version') {
      process.stdout.write(versionLine(tool) + '\n');
      return EXIT_OK;
    }
    const typed = argv.slice(0, 2).join(' ');
    const near = closestCommand(
      commands.map((c) => c.name),
      argv,
    );
    process.stderr.write(
      `${tool}: unknown command '${typed}'${near ? `; did you mean '${near}'?` : ''} ('${tool} --help' lists them)\n`,
    );
    return EXIT_USAGE;
  }
  const rest = argv.slice(cmd.name.split(' ').length);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(usageOf(tool, cmd) + '\n');
    return EXIT_OK;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options ?? {}, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`${tool} ${cmd.name}: ${errorMessage(err)}\n\n${usageOf(tool, cmd)}\n`);
    return EXIT_USAGE;
  }
  const n = parsed.positionals.length;
  if (n < (cmd.minArgs ?? 0) || n > (cmd.maxArgs ?? Infinity)) {
    process.stderr.write(`${tool} ${cmd.name}: wrong number of arguments\n\n${usageOf(tool, cmd)}\n`);
    return EXIT_USAGE;
  }
  try {
    await cmd.run(parsed.positionals, parsed.values as Values);
    return EXIT_OK;
  } catch (err) {
    const code = errorCode(err) ?? 'INTERNAL';
    process.stderr.write(`${tool} ${cmd.name}: ${errorMessage(err)} [${code}]\n`);
    return code === 'USAGE' || code === 'CONFIG' || code === 'INVALID_ARGUMENT' ? EXIT_USAGE : EXIT_FAILED;
  }
}

export function stringOpt(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function intOpt(values: Values, name: string, dflt: number): number {
  const v = stringOpt(values, name);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw usageError(`--${name}: '${v}' is not a whole number`);
  return Number(v);
}

export function ratioOpt(values: Values, name: string, dflt: number): number {
  const v = stringOpt(values, name);
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!(x >= 0 && x <= 1)) throw usageError(`--${name}: '${v}' is not a ratio between 0 and 1`);
  return x;
}

export function choiceOpt<T extends string>(values: Values, name: string, choices: readonly T[], dflt: T): T {
  const v = stringOpt(values, name);
  if (v === undefined) return dflt;
  if (!(choices as readonly string[]).includes(v))
    throw usageError(`--${name}: '${v}' is not one of ${choices.join(', ')}`);
  return v as T;
}

/** The progress of long work as one line: done of total (bytes or plain counts), percentage, rate and ETA. */
export function progressLine(
  label: string,
  done: number,
  total: number,
  elapsedSec: number,
  unit: 'bytes' | 'count' = 'bytes',
): string {
  const amount = (n: number) => (unit === 'bytes' ? formatBytes(n) : String(n));
  const parts = [total > 0 ? `${amount(done)} of ${amount(total)}` : amount(done)];
  if (total > 0) parts.push(`${((100 * done) / total).toFixed(1)}%`);
  const rate = elapsedSec > 0 ? done / elapsedSec : 0;
  if (rate > 0) {
    parts.push(`${amount(Math.round(rate))}/s`);
    if (total > done) parts.push(`ETA ${formatDuration((total - done) / rate)}`);
  }
  return `${label}: ${parts.join(', ')}`;
}

/** 75 -> 1m15s, 3700 -> 1h01m. */
export function formatDuration(sec: number): string {
  const s = Math.ceil(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Prints a one-line progress indicator on a terminal (or always with force), cleared at the end. */
export function progressPrinter(
  label: string,
  force = false,
  unit: 'bytes' | 'count' = 'bytes',
): { fn: (done: number, total: number) => void; end(): void } {
  const active = force || process.stderr.isTTY === true;
  const start = Date.now();
  let shown = false;
  return {
    fn(done: number, total: number) {
      if (!active) return;
      const line = progressLine(label, done, total, (Date.now() - start) / 1000, unit);
      // On a terminal the rest of a longer previous line is erased; elsewhere spaces do.
      process.stderr.write(`\r${line}${process.stderr.isTTY ? '\x1b[K' : '   '}`);
      shown = true;
    },
    end() {
      if (shown) process.stderr.write(force && !process.stderr.isTTY ? '\n' : '\r\x1b[K');
    },
  };
}

/** Indented JSON, bigints as decimal strings. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

export function printJson(value: unknown): void {
  process.stdout.write(jsonText(value) + '\n');
}
