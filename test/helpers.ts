// Shared test helpers: temporary directories removed after each test file, and running walb-tool for real.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const WALB_TOOL = path.join(ROOT, 'dist', 'src', 'bin', 'walb-tool.js');

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `walb-${prefix}-`));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runTool(args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [WALB_TOOL, ...args],
      { cwd: opts.cwd, maxBuffer: 256 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export function sparseFile(file: string, bytes: number): string {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

export function sameBytes(a: string, b: string): boolean {
  const fa = fs.readFileSync(a);
  const fb = fs.readFileSync(b);
  return fa.equals(fb);
}
