// Whole files read through the addon's readers, for tests that compare them with the format oracle.
import { native, type Logpack, type StoredDiffRecord } from '../src/native';

export async function allPacks(wlog: string): Promise<Logpack[]> {
  const f = new native.WlogFile(wlog);
  const out: Logpack[] = [];
  for (;;) {
    const batch = await f.next(100);
    if (batch.length === 0) return out;
    out.push(...batch);
  }
}

export async function allRecords(wdiff: string): Promise<StoredDiffRecord[]> {
  const f = new native.WdiffFile(wdiff);
  const out: StoredDiffRecord[] = [];
  for (;;) {
    const batch = await f.next(1000);
    if (batch.length === 0) return out;
    out.push(...batch);
  }
}

/** The whole virtual full image of a base and a wdiff chain (oldest first). */
export async function readVirtualFull(base: string, diffs: string[]): Promise<Buffer> {
  const v = new native.VirtualFull(base, diffs);
  return v.read({ offset: 0, length: v.size() });
}
