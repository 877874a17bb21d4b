// The process bench/formats.ts starts its timed whole processes from: it reads one JSON request a line on stdin,
// runs that command to its end (stdout to /dev/null, stderr kept) and answers with one JSON line: how long the
// run took from its start to its end, its exit, its stderr and the CPU it used. It stays small, so starting a
// process from it is cheap; the bench itself holds GBs (the in-process side's buffers), and forking it copied its
// page tables at every start, about 0.1 s a run.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';

export interface RunRequest {
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

export interface RunReply {
  ms: number;
  status: number | null;
  signal: string | null;
  error?: string;
  stderr: string;
  cpuMs: number; // user + system of the command, 10 ms ticks
  sysMs: number;
}

/** This process's reaped children: user and system time in ms (fields 16 and 17 of /proc/self/stat). */
export function childCpu(): { user: number; sys: number } {
  try {
    const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ').map(Number);
    return { user: f[13] * 10, sys: f[14] * 10 };
  } catch {
    return { user: 0, sys: 0 }; // not Linux: no figure
  }
}

function run(req: RunRequest): RunReply {
  const c0 = childCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(req.cmd, req.args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 64 << 20,
    env: req.env,
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const c1 = childCpu();
  return {
    ms,
    status: r.status,
    signal: r.signal,
    error: r.error?.message,
    stderr: r.stderr?.toString() ?? '',
    cpuMs: c1.user + c1.sys - c0.user - c0.sys,
    sysMs: c1.sys - c0.sys,
  };
}

if (require.main === module) {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) =>
    process.stdout.write(JSON.stringify(run(JSON.parse(line) as RunRequest)) + '\n'),
  );
}
