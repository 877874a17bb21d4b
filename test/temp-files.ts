// Temporary directories and the files tests put in them: images (sparse or of deterministic bytes), patches,
// ranges and comparisons.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `walb-${prefix}-`));
}

/** Removes a test's directory; WALB_KEEP_TEST_DIRS=1 keeps them (server logs) for a post-mortem. */
export function removeDir(dir: string): void {
  if (process.env.WALB_KEEP_TEST_DIRS === '1') return;
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A temporary directory for one test file, removed when the file's tests are done; name() gives fresh paths. */
export function tempArea(prefix: string): { dir: string; name(base: string): string; cleanup(): void } {
  const dir = makeTempDir(prefix);
  let n = 0;
  return {
    dir,
    name: (base: string) => path.join(dir, `${n++}-${base}`),
    cleanup: () => removeDir(dir),
  };
}

/** Deterministic bytes (xorshift32), so that a failing test can be replayed. */
export function prngBytes(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export function sparseFile(file: string, bytes: number): string {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

/** An image of `bytes`: sparse without a seed, else deterministic bytes of that seed. */
export function writeImage(file: string, bytes: number, seed?: number): string {
  if (seed === undefined) return sparseFile(file, bytes);
  fs.writeFileSync(file, prngBytes(seed, bytes));
  return file;
}

/** A copy of an image file to redo onto. */
export function copyImage(from: string, to: string): string {
  fs.copyFileSync(from, to);
  return to;
}

/** Patches `bytes` into a file at `offset`. */
export function patchFile(file: string, offset: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

export function readRange(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(length);
    const n = fs.readSync(fd, b, 0, length, offset);
    return b.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

export function sameBytes(a: string, b: string): boolean {
  const fa = fs.readFileSync(a);
  const fb = fs.readFileSync(b);
  return fa.equals(fb);
}

/** Index of the first differing byte of two buffers, or -1 (for readable failure messages). */
export function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
