// The shared frame of every command-line tool: subcommand dispatch, option parsing with node:util, help,
// exit codes (0 done, 1 the operation failed, 2 bad usage) and error printing with the stable code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { WalbError, errorCode, errorMessage } from './errors';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** e.g. "wlog to-wdiff" */
  name: string;
  args: string; // usage of the positionals, e.g. "IN.wlog... -o OUT.wdiff"
  summary: string;
  options?: Options;
  optionHelp?: Record<string, string>;
  minArgs?: number;
  maxArgs?: number;
  run(args: string[], values: Values): Promise<void>;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

function usageOf(tool: string, c: Command): string {
  const lines = [`usage: ${tool} ${c.name} ${c.args}`.trimEnd(), '', c.summary];
  const opts = Object.entries(c.options ?? {});
  if (opts.length > 0) {
    lines.push('', 'options:');
    for (const [name, o] of opts) {
      const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ' VALUE' : ''}`;
      lines.push(`  ${flag.padEnd(28)} ${c.optionHelp?.[name] ?? ''}`.trimEnd());
    }
  }
  return lines.join('\n');
}

function overview(tool: string, description: string, commands: Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `usage: ${tool} COMMAND [ARGS] [OPTIONS]`,
    '',
    description,
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    `Run '${tool} COMMAND --help' for the options of a command.`,
  ].join('\n');
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
    process.stderr.write(
      `${tool}: unknown command '${argv.slice(0, 2).join(' ')}'\n\n${overview(tool, description, commands)}\n`,
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

/** Prints a one-line progress indicator on a terminal (or always with force), cleared at the end. */
export function progressPrinter(
  label: string,
  force = false,
): { fn: (done: number, total: number) => void; end(): void } {
  const active = force || process.stderr.isTTY === true;
  const start = Date.now();
  let shown = false;
  return {
    fn(done: number, total: number) {
      if (!active) return;
      const secs = (Date.now() - start) / 1000;
      const pct = total > 0 ? ` ${((100 * done) / total).toFixed(1)}%` : '';
      const rate = secs > 0 ? ` ${(done / 1e6 / secs).toFixed(0)} MB/s` : '';
      process.stderr.write(`\r${label}:${pct} ${(done / 1e6).toFixed(1)} MB${rate}   `);
      shown = true;
    },
    end() {
      if (shown) process.stderr.write(force && !process.stderr.isTTY ? '\n' : '\r\x1b[K');
    },
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(
    JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n',
  );
}
