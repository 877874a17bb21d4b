// WalB's own tools (walb-tools 1.0.19, docs/testing.md) as a test peer: where they are, the one way a test that
// needs them is declared (run when they are there, reported as not run with the reason when not), runners for
// them, loop devices, and image comparison.
import test, { type ExecutionContext, type Implementation } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, runTool } from './processes';

/** WALB_ORACLE_BIN, else `../shared/oracle/walb-tools-1.0.19/bin` from the repository root. */
export const ORACLE_BIN =
  process.env.WALB_ORACLE_BIN ?? path.resolve(ROOT, '..', 'shared', 'oracle', 'walb-tools-1.0.19', 'bin');

function hasLosetup(): boolean {
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why tests of this kind cannot run here, or undefined when they can. */
function whyNotRunnable(needs: { loopDevices: boolean }): string | undefined {
  if (!fs.existsSync(path.join(ORACLE_BIN, 'wlog-gen')))
    return `WalB's tools are not in ${ORACLE_BIN} (set WALB_ORACLE_BIN to their bin directory)`;
  if (needs.loopDevices && process.getuid?.() !== 0) return 'loop devices need root';
  if (needs.loopDevices && !hasLosetup()) return 'losetup is not installed';
  return undefined;
}

/**
 * A test against WalB's tools. When they (or, with `loopDevices`, root and losetup) are missing, the test is not
 * run: it is listed as skipped with the reason in its title, and the reason is printed.
 */
export function oracleTest(title: string, needs: { loopDevices: boolean }, impl: Implementation<[]>): void {
  const why = whyNotRunnable(needs);
  if (why === undefined) {
    test(title, impl);
    return;
  }
  process.stdout.write(`NOT RUN (WalB oracle): ${title}: ${why}\n`);
  test.skip(`${title} [not run: ${why}]`, impl);
}

export interface OracleRun {
  stdout: string;
  stderr: string;
}

/** Runs one of WalB's tools; a non-zero exit fails the test with its stderr. `stdin` is a file to read from. */
export async function oracle(
  t: ExecutionContext,
  tool: string,
  args: string[],
  opts: { stdin?: string } = {},
): Promise<OracleRun> {
  const r = await runProcess(path.join(ORACLE_BIN, tool), args, opts.stdin);
  if (r.code !== 0) t.fail(`${tool} ${args.join(' ')} exited with ${r.code}: ${r.stderr}`);
  return r;
}

function runProcess(
  cmd: string,
  args: string[],
  stdinFile?: string,
): Promise<OracleRun & { code: number | null }> {
  return new Promise((resolve, reject) => {
    const stdin = stdinFile === undefined ? 'ignore' : fs.openSync(stdinFile, 'r');
    const p = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'] });
    if (typeof stdin === 'number') fs.closeSync(stdin);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs walb-tool; a non-zero exit fails the test with its stderr. Returns its stdout. */
export async function tool(t: ExecutionContext, args: string[]): Promise<string> {
  const r = await runTool(args);
  if (r.code !== 0) t.fail(`walb-tool ${args.join(' ')} exited with ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** `key value` lines of WalB's `-stat`/`-super` output as numbers (text values are left out). */
export function statLines(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):? (\d+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Attaches `file` to a free loop device with the given sector size, runs `fn`, and detaches it. */
export async function withLoop<T>(
  file: string,
  sectorSize: number,
  fn: (dev: string) => Promise<T>,
): Promise<T> {
  const dev = execFileSync('losetup', ['-b', String(sectorSize), '-f', '--show', file])
    .toString()
    .trim();
  try {
    return await fn(dev);
  } finally {
    execFileSync('losetup', ['-d', dev]);
  }
}

/** Asserts two files hold the same bytes from byte `from` on, naming the first differing offset. */
export function sameBytes(
  t: ExecutionContext,
  actual: string,
  expected: string,
  what: string,
  from = 0,
): void {
  const a = fs.readFileSync(actual).subarray(from);
  const b = fs.readFileSync(expected).subarray(from);
  if (a.equals(b)) {
    t.pass();
    return;
  }
  let i = 0;
  while (i < Math.min(a.length, b.length) && a[i] === b[i]) i++;
  t.fail(
    `${what}: ${actual} differs from ${expected} at byte ${from + i} (sizes ${from + a.length} and ${from + b.length})`,
  );
}
