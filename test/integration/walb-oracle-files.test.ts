// wlog and wdiff files exchanged with WalB's own tools (walb-tools 1.0.19), both ways, at pbs 512 and 4096: their
// files read and redone by walb-tool give their images; ours pass their checks and their redo gives our images;
// virtual full reads agree. Workloads hold discards, padding records and all-zero IOs.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import {
  native,
  type Compression,
  type DiscardMode,
  type Logpack,
  type StoredDiffRecord,
  type WlogVerifyResult,
} from '../../src/native';
import { allRecords } from '../addon-readers';
import { copyImage, prngBytes, tempArea } from '../temp-files';
import { oracle, oracleTest, sameBytes, statLines, tool } from '../walb-oracle';

const MiB = 1 << 20;
const DEVICE = 4 * MiB;
const CODECS: Compression[] = ['none', 'snappy', 'gzip', 'lzma', 'lz4', 'zstd'];

const area = tempArea('walb-oracle-files');
test.after.always(() => area.cleanup());

function baseImage(seed: number): string {
  const file = area.name('base.img');
  fs.writeFileSync(file, prngBytes(seed, DEVICE));
  return file;
}

/** walb-tool redo of each file in order onto a copy of `base`; returns the image. */
async function ourRedo(
  t: ExecutionContext,
  kind: 'wlog' | 'wdiff',
  files: string[],
  base: string,
  discard: DiscardMode,
) {
  const image = copyImage(base, area.name(`ours-${kind}.img`));
  for (const f of files) await tool(t, [kind, 'redo', f, image, '--discard', discard]);
  return image;
}

/** WalB's wlog-redo / wdiff-redo of each file in order onto a copy of `base` (`-z`: discards zero the range). */
async function theirRedo(
  t: ExecutionContext,
  kind: 'wlog' | 'wdiff',
  files: string[],
  base: string,
  zero: boolean,
) {
  const image = copyImage(base, area.name(`theirs-${kind}.img`));
  for (const f of files) await oracle(t, `${kind}-redo`, ['-i', f, ...(zero ? ['-z'] : []), image]);
  return image;
}

async function ourRecords(t: ExecutionContext, wdiff: string): Promise<StoredDiffRecord[]> {
  return (JSON.parse(await tool(t, ['wdiff', 'show', wdiff, '--json'])) as { records: StoredDiffRecord[] })
    .records;
}

/** WalB's own check of a wdiff: every record's checksum (`wdiff-show -csum`), with its statistics. */
async function theirWdiffCheck(t: ExecutionContext, wdiff: string): Promise<Record<string, number>> {
  const r = await oracle(t, 'wdiff-show', ['-csum', '-stat', '-norec', wdiff]);
  t.notRegex(r.stderr + r.stdout, /ERROR|NG:/, `wdiff-show -csum ${wdiff}`);
  return statLines(r.stdout.replace(/wdiff_stat: /g, ''));
}

/** WalB's own check of a wlog: every IO checksum (`wlog-show -validate`, which reports bad IOs as NG lines). */
async function theirWlogCheck(t: ExecutionContext, wlog: string): Promise<Record<string, number>> {
  const r = await oracle(t, 'wlog-show', ['-validate', '-stat', wlog]);
  t.notRegex(r.stderr + r.stdout, /ERROR|NG:/, `wlog-show -validate ${wlog}`);
  return statLines(r.stdout);
}

/** Logpacks and records as WalB's `wlog-show -pack` prints them, one line each (checksums in hex). */
async function theirPackLines(t: ExecutionContext, wlog: string): Promise<string[]> {
  const out = (await oracle(t, 'wlog-show', ['-pack', wlog])).stdout;
  return out
    .split('\n')
    .filter((l) => /^wlog_[pr]:/.test(l))
    .map((l) => l.trim().split(/\s+/).join(' '));
}

/** The same lines from walb-tool's `wlog show --json`. */
async function ourPackLines(t: ExecutionContext, wlog: string): Promise<string[]> {
  const { packs } = JSON.parse(await tool(t, ['wlog', 'show', wlog, '--json'])) as { packs: Logpack[] };
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const flags = { normal: 'E--', discard: 'E-D', padding: 'EP-' } as const;
  return packs.flatMap((p) => [
    `wlog_p: lsid ${p.lsid} total ${p.totalIoSize} n_rec ${p.nRecords} n_pad ${p.nPadding} csum ${hex(p.checksum)}`,
    ...p.records.map(
      (r) =>
        `wlog_r: lsid ${r.lsid} ${r.lsidLocal} io ${r.offset} ${r.ioSize} flags ${flags[r.kind]} csum ${hex(r.checksum)}`,
    ),
  ]);
}

/**
 * wdiff records as WalB's `wdiff-show` prints them, without checksums (walb-tool does not show them): address,
 * blocks and kind; for normal records also codec and stored size, and for indexed ones where the stored image is
 * and which part of it the record is. (A sorted record's offset is printed relative to its pack by WalB and as a
 * file offset by walb-tool, so it is left out.)
 */
async function theirRecordLines(t: ExecutionContext, wdiff: string): Promise<string[]> {
  const out = (await oracle(t, 'wdiff-show', ['-nohead', wdiff])).stdout;
  return out
    .split('\n')
    .filter((l) => /^wdiff_(sorted|indexed)_rec:/.test(l))
    .map((l) => {
      const f = l.trim().split(/\s+/);
      const kind = f.at(-1) === 'Z-' ? 'allzero' : f.at(-1) === '-D' ? 'discard' : 'normal';
      if (kind !== 'normal') return `${f[1]} ${f[2]} ${kind}`;
      if (f[0] === 'wdiff_sorted_rec:') return `${f[1]} ${f[2]} normal ${f[3]} ${f[5]} bytes`;
      return `${f[1]} ${f[2]} normal ${f[3]} ${f[5]} bytes at ${f[4]}, image ${f[6]} at ${f[7]}`;
    });
}

function recordLines(records: StoredDiffRecord[], indexed: boolean): string[] {
  return records.map((r) => {
    if (r.kind !== 'normal') return `${r.address} ${r.blocks} ${r.kind}`;
    const normal = `${r.address} ${r.blocks} normal ${r.compression} ${r.dataSize} bytes`;
    return indexed ? `${normal} at ${r.dataOffset}, image ${r.origBlocks} at ${r.ioOffset}` : normal;
  });
}

interface TheirWorkload {
  wlogs: string[];
  sorted: string[];
  indexed: string[];
}

/**
 * Two consecutive wlogs from WalB's wlog-gen (random data, then almost-zero data that compresses), converted by
 * their wlog-to-wdiff into sorted and indexed wdiffs. wlog-gen has no seed, so it runs again until the workload
 * holds discards, padding and all-zero IOs.
 */
async function theirWorkload(t: ExecutionContext, pbs: number): Promise<TheirWorkload> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const w: TheirWorkload = { wlogs: [], sorted: [], indexed: [] };
    let lsid = 0;
    let discards = 0;
    let paddings = 0;
    let allZeros = 0;
    for (const data of [['--rand'], []]) {
      const wlog = area.name(`theirs-${pbs}.wlog`);
      const gen = ['-s', '4M', '-z', '640K', '-b', String(pbs), '--lsid', String(lsid), '--maxIoSize', '64K'];
      await oracle(t, 'wlog-gen', [...gen, '--maxDiscardSize', '256K', ...data, '-o', wlog]);
      const stat = statLines((await oracle(t, 'wlog-show', ['-stat', wlog])).stdout);
      lsid = stat.reallyEndLsid;
      discards += stat.discardLb;
      paddings += stat.paddingPb;
      const sorted = area.name(`theirs-${pbs}-sorted.wdiff`);
      const indexed = area.name(`theirs-${pbs}-indexed.wdiff`);
      await oracle(t, 'wlog-to-wdiff', ['-i', wlog, '-o', sorted]);
      await oracle(t, 'wlog-to-wdiff', ['-indexed', '-i', wlog, '-o', indexed]);
      allZeros += (await theirWdiffCheck(t, sorted)).allZeroNr;
      w.wlogs.push(wlog);
      w.sorted.push(sorted);
      w.indexed.push(indexed);
    }
    if (discards > 0 && paddings > 0 && allZeros > 0) return w;
  }
  throw new Error(`wlog-gen gave no workload with discards, padding and all-zero IOs at pbs ${pbs}`);
}

for (const pbs of [512, 4096]) {
  oracleTest(
    `WalB's wlogs and wdiffs (sorted, indexed, merged in every codec) read by walb-tool redo to WalB's images, pbs ${pbs}`,
    { loopDevices: false },
    async (t) => {
      const base = baseImage(pbs);
      const w = await theirWorkload(t, pbs);

      for (const wlog of w.wlogs) {
        const v = JSON.parse(await tool(t, ['wlog', 'verify', wlog, '--json'])) as WlogVerifyResult;
        t.is(v.header.pbs, pbs);
        t.is(v.packs, (await theirWlogCheck(t, wlog)).nrPacks, `packs of ${wlog}`);
        t.deepEqual(await ourPackLines(t, wlog), await theirPackLines(t, wlog), `logpacks of ${wlog}`);
      }
      const wlogImage = await theirRedo(t, 'wlog', w.wlogs, base, true);
      sameBytes(t, await ourRedo(t, 'wlog', w.wlogs, base, 'zero'), wlogImage, 'wlog redo, discards zeroed');
      sameBytes(
        t,
        await ourRedo(t, 'wlog', w.wlogs, base, 'ignore'),
        await theirRedo(t, 'wlog', w.wlogs, base, false),
        'wlog redo, discards ignored',
      );

      for (const [layout, diffs] of [
        ['sorted', w.sorted],
        ['indexed', w.indexed],
      ] as const) {
        for (const [i, d] of diffs.entries()) {
          await tool(t, ['wdiff', 'verify', d]);
          const records = await ourRecords(t, d);
          t.deepEqual(
            recordLines(records, layout === 'indexed'),
            await theirRecordLines(t, d),
            `records of ${d}`,
          );
          // Our conversion of the same wlog is the same file, byte for byte (snappy, the default of both).
          const converted = area.name(`ours-from-theirs-${layout}.wdiff`);
          await native.wlogToWdiff([w.wlogs[i]], converted, { indexed: layout === 'indexed' });
          sameBytes(t, converted, d, `our ${layout} conversion of ${w.wlogs[i]}`);
        }
        const theirs = await theirRedo(t, 'wdiff', diffs, base, true);
        sameBytes(t, theirs, wlogImage, `their ${layout} wdiff redo matches their wlog redo`);
        sameBytes(t, await ourRedo(t, 'wdiff', diffs, base, 'zero'), theirs, `${layout} wdiff redo`);
      }
      const kinds = new Set(
        (await ourRecords(t, w.sorted[0])).concat(await ourRecords(t, w.sorted[1])).map((r) => r.kind),
      );
      t.deepEqual(
        [...kinds].sort(),
        ['allzero', 'discard', 'normal'],
        'their wdiff holds every kind of record',
      );

      // In-process from here: the same addon calls as walb-tool's, without a Node start per file.
      for (const codec of CODECS) {
        const merged = area.name(`theirs-${pbs}-merged-${codec}.wdiff`);
        await oracle(t, 'wdiff-merge', ['-i', ...w.sorted, '-o', merged, '-cmpr', `${codec}:0:2`]);
        await native.wdiffVerify(merged);
        const records = await allRecords(merged);
        t.deepEqual(recordLines(records, false), await theirRecordLines(t, merged), `records of ${merged}`);
        const codes = new Set(records.map((r) => r.compression));
        t.true(codes.has(codec), `their ${codec} merge read as ${codec} records (${[...codes].join(', ')})`);
        const image = copyImage(base, area.name(`ours-merged-${codec}.img`));
        await native.wdiffRedo(merged, image, { discard: 'zero' });
        sameBytes(t, image, wlogImage, `their ${codec} merge redo`);
        // Our merge of the same wdiffs is the same file but for the header, where WalB leaves the uuid zero
        // (docs/formats.md §5.4); zstd streams differ in bytes (WalB's do not follow the level).
        if (codec === 'zstd') continue;
        const ourMerge = area.name(`ours-from-theirs-merged-${codec}.wdiff`);
        await native.wdiffMerge(w.sorted, ourMerge, { compression: codec });
        sameBytes(t, ourMerge, merged, `our ${codec} merge of their wdiffs`, 32);
      }

      for (const [layout, diffs] of [
        ['sorted', w.sorted],
        ['indexed', w.indexed],
      ] as const) {
        const theirs = area.name(`theirs-${pbs}-${layout}-virt.img`);
        const ours = area.name(`ours-${pbs}-${layout}-virt.img`);
        await oracle(t, 'virt-full-cat', ['-i', base, '-d', ...diffs, '-o', theirs]);
        await tool(t, ['virt-full-cat', base, ...diffs, '-o', ours]);
        sameBytes(t, ours, theirs, `virtual full read of their ${layout} wdiffs`);
      }
    },
  );
}

/** Two consecutive wlogs from walb-tool's generator with discards, all-zero writes and ring-end padding. */
async function ourWorkload(t: ExecutionContext, pbs: number): Promise<string[]> {
  const wlogs: string[] = [];
  let lsid = 1000;
  for (const [i, data] of ['random', 'compressible'].entries()) {
    const wlog = area.name(`ours-${pbs}.wlog`);
    const ring = pbs === 512 ? 900 : 100; // smaller than each wlog, so that every one pads at the ring's end
    const r = JSON.parse(
      await tool(t, [
        'wlog',
        'gen',
        '-o',
        wlog,
        ...['--size', '4M', '--amount', '640K', '--pbs', String(pbs), '--max-io', '16K', '--data', data],
        ...['--discard-ratio', '0.15', '--allzero-ratio', '0.15', '--ring', String(ring)],
        ...['--lsid', String(lsid), '--seed', String(pbs + i), '--json'],
      ]),
    ) as { endLsid: number; discards: number; paddings: number };
    t.true(r.discards > 0 && r.paddings > 0, `our workload has discards and padding: ${JSON.stringify(r)}`);
    lsid = r.endLsid;
    wlogs.push(wlog);
  }
  return wlogs;
}

for (const pbs of [512, 4096]) {
  oracleTest(
    `walb-tool's wlogs and wdiffs (every codec, sorted, indexed, merged) pass WalB's checks and redo to our images, pbs ${pbs}`,
    { loopDevices: false },
    async (t) => {
      const base = baseImage(pbs + 1);
      const wlogs = await ourWorkload(t, pbs);
      for (const wlog of wlogs) {
        const v = JSON.parse(await tool(t, ['wlog', 'verify', wlog, '--json'])) as WlogVerifyResult;
        const stat = await theirWlogCheck(t, wlog);
        t.is(stat.nrPacks, v.packs, `packs of ${wlog}`);
        t.is(stat.reallyEndLsid, v.endLsid, `end lsid of ${wlog}`);
        t.true(stat.paddingPb > 0 && stat.discardLb > 0, `WalB sees padding and discards in ${wlog}`);
        t.deepEqual(await theirPackLines(t, wlog), await ourPackLines(t, wlog), `logpacks of ${wlog}`);
      }
      const image = await ourRedo(t, 'wlog', wlogs, base, 'zero');
      sameBytes(t, await theirRedo(t, 'wlog', wlogs, base, true), image, 'wlog redo, discards zeroed');
      sameBytes(
        t,
        await theirRedo(t, 'wlog', wlogs, base, false),
        await ourRedo(t, 'wlog', wlogs, base, 'ignore'),
        'wlog redo, discards ignored',
      );

      const singles: string[] = [];
      for (const wlog of wlogs) {
        const d = area.name(`ours-${pbs}-single.wdiff`);
        await tool(t, ['wlog', 'to-wdiff', wlog, '-o', d]);
        singles.push(d);
      }
      const allZeros =
        (await theirWdiffCheck(t, singles[0])).allZeroNr + (await theirWdiffCheck(t, singles[1])).allZeroNr;
      t.true(allZeros > 0, 'our wdiffs hold all-zero records');
      sameBytes(t, await theirRedo(t, 'wdiff', singles, base, true), image, 'our wdiffs');

      // In-process from here: the same addon calls as walb-tool's, without a Node start per file.
      const indexedDiffs: string[] = [];
      for (const compression of CODECS) {
        for (const indexed of [false, true]) {
          const diffs: string[] = [];
          for (const wlog of wlogs) {
            const d = area.name(`ours-${pbs}-${indexed ? 'indexed' : 'sorted'}-${compression}.wdiff`);
            await native.wlogToWdiff([wlog], d, { compression, indexed });
            await theirWdiffCheck(t, d);
            t.deepEqual(
              await theirRecordLines(t, d),
              recordLines(await allRecords(d), indexed),
              `records of ${d}`,
            );
            diffs.push(d);
          }
          const what = `our ${indexed ? 'indexed' : 'sorted'} ${compression} wdiffs`;
          t.true(
            (await allRecords(diffs[1])).some((r) => r.compression === compression),
            `${what} use the codec`,
          );
          sameBytes(t, await theirRedo(t, 'wdiff', diffs, base, true), image, what);
          if (indexed && compression === 'snappy') indexedDiffs.push(...diffs);
        }
        const merged = area.name(`ours-${pbs}-merged-${compression}.wdiff`);
        await native.wdiffMerge(singles, merged, { compression });
        await theirWdiffCheck(t, merged);
        t.deepEqual(
          await theirRecordLines(t, merged),
          recordLines(await allRecords(merged), false),
          `records of ${merged}`,
        );
        sameBytes(t, await theirRedo(t, 'wdiff', [merged], base, true), image, `our ${compression} merge`);
      }

      for (const [layout, diffs] of [
        ['sorted', singles],
        ['indexed', indexedDiffs],
      ] as const) {
        const theirs = area.name(`theirs-${pbs}-${layout}-virt.img`);
        const ours = area.name(`ours-${pbs}-${layout}-virt.img`);
        await oracle(t, 'virt-full-cat', ['-i', base, '-d', ...diffs, '-o', theirs]);
        await tool(t, ['virt-full-cat', base, ...diffs, '-o', ours]);
        sameBytes(t, ours, theirs, `virtual full read of our ${layout} wdiffs`);
        sameBytes(t, ours, image, `virtual full read of our ${layout} wdiffs is the redone image`);
      }
    },
  );
}
