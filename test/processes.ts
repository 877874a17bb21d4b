// Running programs from tests: walb-tool for real, and any other program (NBD clients, mkfs, ...).
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
/** walb-tool, a native program built next to the addons (native/src/tool). */
export const WALB_TOOL = path.join(ROOT, 'build', 'Release', 'walb-tool');

export interface RunResult {
  code: number;
  signal: string | null; // set when the process was killed (a crash), in which case code is -1
  stdout: string;
  stderr: string;
}

export function runTool(args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(WALB_TOOL, args, { cwd: opts.cwd, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      const signal = err?.signal ?? null;
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs any program (real NBD clients, mkfs, ...) and collects its output; never rejects. */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 << 20,
        env: opts.env,
      },
      (err, stdout, stderr) => {
        const signal = err?.signal ?? null;
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, signal, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Runs walb-tool expecting a clean failure: no crash, the exit status, the file named, the error code shown. */
export async function expectToolFailure(
  t: ExecutionContext,
  args: string[],
  want: { code: string; file?: string; exit?: number; message?: RegExp },
): Promise<RunResult> {
  const r = await runTool(args);
  t.is(r.signal, null, `walb-tool was killed: ${r.stderr}`);
  t.is(r.code, want.exit ?? 1, `exit status of walb-tool ${args.join(' ')}: ${r.stderr}`);
  if (want.file !== undefined) t.true(r.stderr.includes(want.file), `stderr names ${want.file}: ${r.stderr}`);
  t.true(r.stderr.includes(`[${want.code}]`), `stderr shows [${want.code}]: ${r.stderr}`);
  if (want.message) t.regex(r.stderr, want.message);
  return r;
}

/** What the open file descriptors of a process point at, from /proc/PID/fd: '/dir/x.wdiff (deleted)', ... */
export function openFiles(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  const targets: string[] = [];
  for (const fd of fs.readdirSync(dir)) {
    try {
      targets.push(fs.readlinkSync(path.join(dir, fd)));
    } catch {
      // closed between the listing and the readlink
    }
  }
  return targets;
}
