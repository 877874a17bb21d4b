// Runs one addon call in a process of its own and reports how it ended and how much memory it took: the resident
// set before and after (process.memoryUsage().rss) and the peak resident set (process.resourceUsage().maxRSS).
// The peak is what catches a large buffer: glibc hands big blocks back to the kernel as soon as they are freed,
// so a buffer allocated and dropped inside a failing call leaves the resident set after the call unchanged. The
// peak is reset just before the call (writing 5 to /proc/self/clear_refs), so that what node touched while
// starting up does not hide it. A process of its own keeps other tests' memory out of the measurement. Pages of
// files a call maps count in the resident set too; the anonymous part (RssAnon in /proc/self/status, sampled every
// few milliseconds while the call runs on the addon's thread) is the memory the call itself holds.
//
//   node dist/test/memory-probe.js '["wdiffVerify", "/path/x.wdiff"]'   -> one line of JSON (ProbeResult)
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { native } from '../src/native';

export interface ProbeResult {
  code: string; // 'ok' or the error's code
  message: string;
  result: unknown;
  rssBefore: number; // bytes
  rssAfter: number;
  peakBefore: number;
  peakAfter: number;
  anonBefore: number; // bytes
  anonPeak: number; // the highest anonymous resident set sampled during the call
}

export type ProbeCall =
  | ['wdiffVerify', string]
  | ['wdiffRedo', string, string]
  | ['wlogVerify', string]
  | ['wlogToWdiff', string, string]
  | ['wdiffMerge', string[], string] // inputs oldest first, output
  | ['virtualFull', string, string[], [number, number][]]; // base, wdiffs, [offset, length] reads (hex out)

async function call(c: ProbeCall): Promise<unknown> {
  switch (c[0]) {
    case 'wdiffVerify':
      return native.wdiffVerify(c[1]);
    case 'wdiffRedo':
      return native.wdiffRedo(c[1], c[2], {});
    case 'wlogVerify':
      return native.wlogVerify(c[1]);
    case 'wlogToWdiff':
      return native.wlogToWdiff([c[1]], c[2], {});
    case 'wdiffMerge':
      return native.wdiffMerge(c[1], c[2], {});
    case 'virtualFull': {
      const v = new native.VirtualFull(c[1], c[2]);
      try {
        const out: string[] = [];
        for (const [offset, length] of c[3]) out.push((await v.read({ offset, length })).toString('hex'));
        return out;
      } finally {
        v.close();
      }
    }
  }
}

const peak = () => process.resourceUsage().maxRSS * 1024;

/** The anonymous resident set (heap, stacks, buffers; not mapped files), in bytes. */
function anonResident(): number {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Resets the peak resident set to the current one (Linux >= 4.0); without it the peak since start is used. */
function resetPeak(): void {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // an older kernel or a read-only /proc: the comparison is then only less strict
  }
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2]) as ProbeCall;
  resetPeak();
  const rssBefore = process.memoryUsage().rss;
  const peakBefore = peak();
  const anonBefore = anonResident();
  let anonPeak = anonBefore;
  const sampler = setInterval(() => (anonPeak = Math.max(anonPeak, anonResident())), 2);
  let code = 'ok';
  let message = '';
  let result: unknown = null;
  try {
    result = await call(c);
  } catch (e) {
    code = String((e as { code?: unknown }).code ?? 'THROWN');
    message = (e as Error).message;
  }
  clearInterval(sampler);
  anonPeak = Math.max(anonPeak, anonResident());
  const r: ProbeResult = {
    code,
    message,
    result,
    rssBefore,
    rssAfter: process.memoryUsage().rss,
    peakBefore,
    peakAfter: peak(),
    anonBefore,
    anonPeak,
  };
  process.stdout.write(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) + '\n');
}

/** Runs `c` in a fresh node process (this file as its script) and returns what it reported. */
export function probe(c: ProbeCall): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [__filename, JSON.stringify(c)],
      { maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`memory probe ${c[0]} failed (${err.signal ?? err.code}): ${stderr}`));
        else resolve(JSON.parse(stdout) as ProbeResult);
      },
    );
  });
}

if (require.main === module) void main();
