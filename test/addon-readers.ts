// Whole files read through the addon's readers, for tests that compare them with the format oracle. Each reader
// is closed before the function returns.
import { native, type Logpack, type StoredDiffRecord, type WlogHeader } from '../src/native';

export function readWlogHeader(wlog: string): WlogHeader {
  const f = new native.WlogFile(wlog);
  try {
    return f.header();
  } finally {
    f.close();
  }
}

export async function allPacks(wlog: string): Promise<Logpack[]> {
  const f = new native.WlogFile(wlog);
  try {
    const out: Logpack[] = [];
    for (;;) {
      const batch = await f.next(100);
      if (batch.length === 0) return out;
      out.push(...batch);
    }
  } finally {
    f.close();
  }
}

export async function allRecords(wdiff: string): Promise<StoredDiffRecord[]> {
  const f = new native.WdiffFile(wdiff);
  try {
    const out: StoredDiffRecord[] = [];
    for (;;) {
      const batch = await f.next(1000);
      if (batch.length === 0) return out;
      out.push(...batch);
    }
  } finally {
    f.close();
  }
}

/** The whole virtual full image of a base and a wdiff chain (oldest first). */
export async function readVirtualFull(base: string, diffs: string[]): Promise<Buffer> {
  const v = new native.VirtualFull(base, diffs);
  try {
    return await v.read({ offset: 0, length: v.size() });
  } finally {
    v.close();
  }
}
