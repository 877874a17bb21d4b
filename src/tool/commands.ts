// walb-tool: offline tools on wlog/wdiff files, log devices and images. Every byte is handled by the addon.
import { once } from 'node:events';
import fs from 'node:fs';
import { native, type Compression, type DiscardMode, type Logpack, type StoredDiffRecord } from '../native';
import { formatBytes, parseSize } from '../common/units';
import {
  choiceOpt,
  intOpt,
  jsonText,
  printJson,
  progressPrinter,
  ratioOpt,
  stringOpt,
  usageError,
  type Command,
  type Options,
  type Values,
} from '../common/cli';

const COMPRESSIONS = ['snappy', 'none', 'zstd', 'lz4', 'gzip', 'lzma'] as const;
const DISCARD_MODES = ['ignore', 'passdown', 'zero'] as const;
const LB = 512;

const jsonOpt: Options = { json: { type: 'boolean' } };
const progressOpt: Options = { progress: { type: 'boolean' } };
const diffWriteOpts: Options = {
  compression: { type: 'string' },
  level: { type: 'string' },
  'max-io': { type: 'string' },
};
const diffWriteHelp = {
  compression: 'snappy (default), none, zstd, lz4, gzip, lzma',
  level: 'compression level (0 = the codec default)',
  'max-io': 'split records longer than this (default 1M; 0 = never)',
};

function outputOpt(values: Values): string {
  const out = stringOpt(values, 'output');
  if (!out) throw usageError('an output is required: -o PATH');
  return out;
}

function diffWriteOptions(values: Values): { compression: Compression; level: number; maxIoBlocks: number } {
  const maxIo = stringOpt(values, 'max-io');
  const maxIoBytes = maxIo === undefined ? 1 << 20 : parseSize(maxIo, '--max-io');
  if (maxIoBytes % LB !== 0) throw usageError('--max-io must be a multiple of 512 bytes');
  return {
    compression: choiceOpt(values, 'compression', COMPRESSIONS, 'snappy'),
    level: intOpt(values, 'level', 0),
    maxIoBlocks: maxIoBytes / LB,
  };
}

function lsidOpt(values: Values, name: string): number | undefined {
  const v = stringOpt(values, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw usageError(`--${name}: '${v}' is not an lsid`);
  return Number(v);
}

async function withProgress<T>(
  label: string,
  values: Values,
  run: (p: (d: number, t: number) => void) => Promise<T>,
) {
  const pr = progressPrinter(label, values.progress === true);
  try {
    return await run(pr.fn);
  } finally {
    pr.end();
  }
}

function report(values: Values, result: object, human: string): void {
  if (values.json) printJson(result);
  else process.stdout.write(human + '\n');
}

function mbps(bytes: number, ms: number): string {
  return ms > 0 ? `${(bytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s` : '-';
}

function packLines(p: Logpack, withRecords: boolean): string[] {
  const lines = [
    `pack lsid ${p.lsid} records ${p.nRecords} padding ${p.nPadding} total_io_size ${p.totalIoSize} csum ${hex(p.checksum)}`,
  ];
  if (withRecords) {
    for (const r of p.records) {
      lines.push(
        `  ${r.kind.padEnd(7)} lsid ${r.lsid} (+${r.lsidLocal}) offset ${r.offset} size ${r.ioSize} csum ${hex(r.checksum)}`,
      );
    }
  }
  return lines;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function recordLine(r: StoredDiffRecord, indexed: boolean): string {
  const base = `${r.kind.padEnd(7)} addr ${r.address} blocks ${r.blocks} ${r.compression} data ${r.dataOffset}+${r.dataSize}`;
  return indexed && r.kind === 'normal' ? `${base} image ${r.origBlocks} LB at +${r.ioOffset}` : base;
}

/** Help of the options many commands share, and the value names of walb-tool's options. */
const sharedHelp: Record<string, string> = {
  json: 'machine-readable output',
  progress: 'a progress line on stderr also when it is not a terminal',
  output: 'the file to write',
};
const placeholders: Record<string, string> = {
  output: 'PATH',
  amount: 'SIZE',
  pbs: 'BYTES',
  'min-io': 'SIZE',
  'max-io': 'SIZE',
  'discard-ratio': 'RATIO',
  'allzero-ratio': 'RATIO',
  overlap: 'RATIO',
  memory: 'SIZE',
  compression: 'CODEC',
  level: 'N',
  seed: 'N',
  salt: 'N',
  discard: 'MODE',
  begin: 'LSID',
  end: 'LSID',
  chunk: 'SIZE',
  data: 'KIND',
  ring: 'PBS',
};

export const commands: Command[] = [
  {
    name: 'wlog gen',
    args: '-o OUT.wlog',
    summary: 'Generate a random workload as a wlog file (for tests and benchmarks).',
    options: {
      output: { type: 'string', short: 'o' },
      size: { type: 'string' },
      amount: { type: 'string' },
      pbs: { type: 'string' },
      'min-io': { type: 'string' },
      'max-io': { type: 'string' },
      'discard-ratio': { type: 'string' },
      'allzero-ratio': { type: 'string' },
      overlap: { type: 'string' },
      data: { type: 'string' },
      lsid: { type: 'string' },
      ring: { type: 'string' },
      seed: { type: 'string' },
      salt: { type: 'string' },
      ...jsonOpt,
      ...progressOpt,
    },
    optionHelp: {
      output: 'the wlog file to write',
      size: 'device size the IOs address (default 1G)',
      amount: 'bytes of data to write (default 64M)',
      pbs: 'physical block size, 512 or 4096 (default 512)',
      'min-io': 'smallest IO (default 512)',
      'max-io': 'largest IO (default 32K, at most 32M-512)',
      'discard-ratio': 'share of IOs that are discards (default 0)',
      'allzero-ratio': 'share of writes that are all zeros (default 0)',
      overlap: 'share of IOs landing on a recent address (default 0.2)',
      data: 'random (default), compressible or zero',
      lsid: 'first lsid (default 0)',
      ring: 'ring-buffer size in physical blocks: pad as the driver does at its end (default: no ring)',
      seed: 'random seed for a reproducible workload',
      salt: 'log checksum salt (default random)',
      json: 'print the result as JSON',
      progress: 'print progress even when stderr is not a terminal',
    },
    maxArgs: 0,
    async run(_args, values) {
      const out = outputOpt(values);
      const pbs = intOpt(values, 'pbs', 512);
      const lbOf = (name: string, dflt: string) => {
        const bytes = parseSize(stringOpt(values, name) ?? dflt, `--${name}`);
        if (bytes % LB !== 0 || bytes === 0)
          throw usageError(`--${name} must be a positive multiple of 512 bytes`);
        return bytes / LB;
      };
      const saltText = stringOpt(values, 'salt');
      const t0 = Date.now();
      const r = await withProgress('generating', values, (progress) =>
        native.wlogGen(
          out,
          {
            deviceSize: lbOf('size', '1G'),
            amount: parseSize(stringOpt(values, 'amount') ?? '64M', '--amount'),
            pbs,
            minIoSize: lbOf('min-io', '512'),
            maxIoSize: lbOf('max-io', '32K'),
            discardRatio: ratioOpt(values, 'discard-ratio', 0),
            allZeroRatio: ratioOpt(values, 'allzero-ratio', 0),
            overlapRatio: ratioOpt(values, 'overlap', 0.2),
            data: choiceOpt(values, 'data', ['random', 'compressible', 'zero'] as const, 'random'),
            lsid: lsidOpt(values, 'lsid') ?? 0,
            ringBufferSize: intOpt(values, 'ring', 0),
            seed: intOpt(values, 'seed', 0),
            salt: saltText === undefined ? undefined : intOpt(values, 'salt', 0),
          },
          progress,
        ),
      );
      report(
        values,
        r,
        `wrote ${out}: ${r.ios} IOs (${r.discards} discards) in ${r.packs} logpacks, ${formatBytes(r.bytes)} of data, ` +
          `lsid ${r.beginLsid}..${r.endLsid}, ${r.paddings} padding records, salt ${hex(r.salt)} (${Date.now() - t0} ms)`,
      );
    },
  },
  {
    name: 'wlog show',
    args: 'IN.wlog',
    summary: 'Print the header and logpacks of a wlog file.',
    options: { records: { type: 'boolean' }, ...jsonOpt },
    optionHelp: { records: 'also print every record', json: 'print JSON (header and packs with records)' },
    minArgs: 1,
    maxArgs: 1,
    async run([input], values) {
      const f = new native.WlogFile(input);
      try {
        const h = f.header();
        const packs: Logpack[] = [];
        if (!values.json) {
          process.stdout.write(
            `wlog ${input}\n  pbs ${h.pbs} salt ${hex(h.salt)} uuid ${h.uuid}\n  begin lsid ${h.beginLsid} end lsid ${h.endLsid}\n`,
          );
        }
        let n = 0;
        let end = h.beginLsid;
        for (;;) {
          const batch = await f.next(256);
          if (batch.length === 0) break;
          for (const p of batch) {
            n++;
            end = p.lsid + 1 + p.totalIoSize;
            if (values.json) packs.push(p);
            else process.stdout.write(packLines(p, values.records === true).join('\n') + '\n');
          }
        }
        if (values.json) printJson({ header: h, packs });
        else process.stdout.write(`${n} logpacks, lsid ${h.beginLsid}..${end}\n`);
      } finally {
        f.close();
      }
    },
  },
  {
    name: 'wlog verify',
    args: 'IN.wlog',
    summary: 'Check every header and data checksum of a wlog file.',
    options: { ...jsonOpt, ...progressOpt },
    minArgs: 1,
    maxArgs: 1,
    async run([input], values) {
      const r = await withProgress('verifying', values, (p) => native.wlogVerify(input, p));
      report(
        values,
        { ok: true, ...r },
        `ok: ${input}: ${r.packs} logpacks, ${r.records} records (${r.discards} discards, ${r.paddings} paddings), ` +
          `${formatBytes(r.dataBytes)} of data, lsid ${r.header.beginLsid}..${r.endLsid}` +
          (r.endBlock ? '' : ' (no end block: the file may have been cut at a pack boundary)'),
      );
    },
  },
  {
    name: 'wlog to-wdiff',
    args: 'IN.wlog... -o OUT.wdiff',
    summary: 'Convert wlogs (consecutive, same device) into one wdiff; the newest write wins.',
    options: {
      output: { type: 'string', short: 'o' },
      indexed: { type: 'boolean' },
      memory: { type: 'string' },
      ...diffWriteOpts,
      ...jsonOpt,
      ...progressOpt,
    },
    optionHelp: {
      output: 'the wdiff to write',
      indexed: 'write the indexed format (as the proxy does) instead of sorted',
      memory: 'memory for the sorted conversion before spilling to temporary files (default 256M)',
      ...diffWriteHelp,
    },
    minArgs: 1,
    async run(inputs, values) {
      const out = outputOpt(values);
      const t0 = Date.now();
      const r = await withProgress('converting', values, (p) =>
        native.wlogToWdiff(
          inputs,
          out,
          {
            ...diffWriteOptions(values),
            indexed: values.indexed === true,
            memoryLimit: parseSize(stringOpt(values, 'memory') ?? '256M', '--memory'),
          },
          p,
        ),
      );
      const ms = Date.now() - t0;
      report(
        values,
        { ...r, ms },
        `wrote ${out} (${values.indexed ? 'indexed' : 'sorted'}): ${r.records} records from ${r.packs} logpacks, ` +
          `lsid ${r.beginLsid}..${r.endLsid}, ${formatBytes(r.fileBytes)}; ${ms} ms, ${mbps(r.inputBytes, ms)}`,
      );
    },
  },
  {
    name: 'wlog redo',
    args: 'IN.wlog IMAGE',
    summary: 'Apply a wlog to an image file or block device in log order.',
    options: { discard: { type: 'string' }, ...jsonOpt, ...progressOpt },
    optionHelp: { discard: 'what a discard does: ignore (default), passdown, zero' },
    minArgs: 2,
    maxArgs: 2,
    async run([input, image], values) {
      const discard: DiscardMode = choiceOpt(values, 'discard', DISCARD_MODES, 'ignore');
      const r = await withProgress('redo', values, (p) => native.wlogRedo(input, image, { discard }, p));
      report(
        values,
        r,
        `applied ${input} to ${image}: ${r.records} records, ${formatBytes(r.writtenBytes)} written, lsid ${r.beginLsid}..${r.endLsid}`,
      );
    },
  },
  {
    name: 'wlog extract',
    args: 'LDEV -o OUT.wlog',
    summary: 'Copy the logs of a log device into a wlog file (from oldest lsid to the end of valid logs).',
    options: {
      output: { type: 'string', short: 'o' },
      begin: { type: 'string' },
      end: { type: 'string' },
      ...jsonOpt,
    },
    optionHelp: {
      begin: 'first lsid (default: the oldest lsid)',
      end: 'stop at this lsid (default: end of valid logs)',
    },
    minArgs: 1,
    maxArgs: 1,
    async run([ldev], values) {
      const out = outputOpt(values);
      const r = await native.ldevExtract(ldev, out, {
        beginLsid: lsidOpt(values, 'begin'),
        endLsid: lsidOpt(values, 'end'),
      });
      report(
        values,
        r,
        `wrote ${out}: ${r.packs} logpacks, lsid ${r.beginLsid}..${r.endLsid}${r.shrunk ? ' (last pack was torn and shrunk)' : ''}`,
      );
    },
  },
  {
    name: 'wlog restore',
    args: 'IN.wlog LDEV',
    summary: 'Write the logpacks of a wlog into a formatted log device at their lsids (for tests).',
    minArgs: 2,
    maxArgs: 2,
    async run([input, ldev]) {
      const end = await native.ldevRestore(input, ldev);
      process.stdout.write(`restored ${input} into ${ldev}; logs end at lsid ${end}\n`);
    },
  },
  {
    name: 'ldev show',
    args: 'LDEV',
    summary: 'Print the super sector of a log device.',
    options: jsonOpt,
    minArgs: 1,
    maxArgs: 1,
    async run([ldev], values) {
      const s = await native.readSuper(ldev);
      report(
        values,
        s,
        [
          `log device ${ldev}`,
          `  name '${s.name}' uuid ${s.uuid} salt ${hex(s.salt)} pbs ${s.pbs}`,
          `  ring buffer ${s.ringBufferSize} PB at PB ${s.ringBufferOffset}`,
          `  oldest lsid ${s.oldestLsid} written lsid ${s.writtenLsid} device size ${s.deviceSize} LB`,
        ].join('\n'),
      );
    },
  },
  {
    name: 'wdiff show',
    args: 'IN.wdiff',
    summary: 'Print the header and records of a wdiff file (sorted or indexed).',
    options: jsonOpt,
    minArgs: 1,
    maxArgs: 1,
    async run([input], values) {
      const f = new native.WdiffFile(input);
      // Records are written as they are read (a batch at a time, waiting for stdout to drain), so that a wdiff
      // of millions of records shows in bounded memory; with --json too, as one document {header, records}.
      const write = async (text: string) => {
        if (!process.stdout.write(text)) await once(process.stdout, 'drain');
      };
      try {
        const h = f.header();
        await write(
          values.json
            ? `{\n  "header": ${jsonText(h).replace(/\n/g, '\n  ')},\n  "records": [`
            : `wdiff ${input}\n  type ${h.type} uuid ${h.uuid}\n`,
        );
        let n = 0;
        for (;;) {
          const batch = await f.next(4096);
          if (batch.length === 0) break;
          await write(
            values.json
              ? batch.map((r, i) => `${n + i === 0 ? '' : ','}\n    ${JSON.stringify(r)}`).join('')
              : batch.map((r) => recordLine(r, h.type === 'indexed')).join('\n') + '\n',
          );
          n += batch.length;
        }
        await write(values.json ? `${n === 0 ? '' : '\n  '}]\n}\n` : `${n} records\n`);
      } finally {
        f.close();
      }
    },
  },
  {
    name: 'wdiff verify',
    args: 'IN.wdiff',
    summary: 'Check every checksum, the order of records and the decompression of a wdiff.',
    options: { ...jsonOpt, ...progressOpt },
    minArgs: 1,
    maxArgs: 1,
    async run([input], values) {
      const r = await withProgress('verifying', values, (p) => native.wdiffVerify(input, p));
      report(
        values,
        { ok: true, ...r },
        `ok: ${input}: ${r.records} records, ${formatBytes(r.dataBlocks * LB)} data, ` +
          `${formatBytes(r.allZeroBlocks * LB)} all-zero, ${formatBytes(r.discardBlocks * LB)} discarded`,
      );
    },
  },
  {
    name: 'wdiff merge',
    args: 'OLDEST.wdiff ... NEWEST.wdiff -o OUT.wdiff',
    summary: 'Merge wdiffs, oldest first, into one sorted wdiff; the newest write wins.',
    options: { output: { type: 'string', short: 'o' }, ...diffWriteOpts, ...jsonOpt, ...progressOpt },
    optionHelp: { output: 'the wdiff to write', ...diffWriteHelp },
    minArgs: 1,
    async run(inputs, values) {
      const out = outputOpt(values);
      const inputBytes = inputs.reduce((s, p) => s + fs.statSync(p).size, 0);
      const t0 = Date.now();
      const r = await withProgress('merging', values, (p) =>
        native.wdiffMerge(inputs, out, diffWriteOptions(values), p),
      );
      const ms = Date.now() - t0;
      report(
        values,
        { ...r, inputBytes, ms },
        `wrote ${out}: ${r.records} records, ${formatBytes(r.fileBytes)} from ${inputs.length} wdiffs; ${ms} ms, ${mbps(inputBytes, ms)}`,
      );
    },
  },
  {
    name: 'wdiff redo',
    args: 'IN.wdiff IMAGE',
    summary: 'Apply a wdiff to an image file or block device.',
    options: { discard: { type: 'string' }, ...jsonOpt, ...progressOpt },
    optionHelp: { discard: 'what a discard does: ignore (default), passdown, zero' },
    minArgs: 2,
    maxArgs: 2,
    async run([input, image], values) {
      const discard: DiscardMode = choiceOpt(values, 'discard', DISCARD_MODES, 'ignore');
      const r = await withProgress('redo', values, (p) => native.wdiffRedo(input, image, { discard }, p));
      report(
        values,
        r,
        `applied ${input} to ${image}: ${r.records} records, ${formatBytes(r.writtenBytes)} written, ${formatBytes(r.zeroedBytes)} zeroed`,
      );
    },
  },
  {
    name: 'virt-full-cat',
    args: 'BASE [OLDEST.wdiff ... NEWEST.wdiff] -o OUT|-',
    summary: 'Read a base image with wdiffs applied, without changing anything, into a file or stdout.',
    options: { output: { type: 'string', short: 'o' }, ...progressOpt },
    optionHelp: { output: 'image file to write, or - for stdout' },
    minArgs: 1,
    async run([base, ...diffs], values) {
      const out = outputOpt(values);
      const image = new native.VirtualFull(base, diffs);
      const size = image.size();
      const chunk = 4 << 20;
      let fd: number;
      try {
        fd = out === '-' ? 1 : fs.openSync(out, 'w');
      } catch (err) {
        image.close();
        throw err;
      }
      const pr = progressPrinter('reading', values.progress === true);
      try {
        for (let off = 0; off < size; off += chunk) {
          const buf = await image.read({ offset: off, length: Math.min(chunk, size - off) });
          if (out !== '-' && buf.every((b) => b === 0)) continue; // keep the output sparse
          writeFully(fd, buf, out === '-' ? null : off);
          pr.fn(off + buf.length, size);
        }
        if (out !== '-') {
          fs.ftruncateSync(fd, size);
          fs.fsyncSync(fd);
        }
      } finally {
        pr.end();
        image.close();
        if (out !== '-') fs.closeSync(fd);
      }
    },
  },
  {
    name: 'hash',
    args: 'IMAGE [OLDEST.wdiff ... NEWEST.wdiff]',
    summary: 'XXH3-128 of an image (with wdiffs applied virtually), whole and per chunk.',
    options: {
      chunk: { type: 'string' },
      seed: { type: 'string' },
      chunks: { type: 'boolean' },
      ...jsonOpt,
      ...progressOpt,
    },
    optionHelp: {
      chunk: 'chunk size (default 256K)',
      seed: 'hash seed (default 0)',
      chunks: 'also print one hash per chunk',
    },
    minArgs: 1,
    async run([image, ...diffs], values) {
      const chunkSize = parseSize(stringOpt(values, 'chunk') ?? '256K', '--chunk');
      const seedText = stringOpt(values, 'seed') ?? '0';
      if (!/^\d+$/.test(seedText)) throw usageError(`--seed: '${seedText}' is not a whole number`);
      const opts = { chunkSize, seed: BigInt(seedText), chunks: values.chunks === true };
      const r = await withProgress('hashing', values, async (p) => {
        if (diffs.length === 0) return native.hashImage(image, opts, p);
        const virtual = new native.VirtualFull(image, diffs);
        try {
          return await virtual.hash(opts, p);
        } finally {
          virtual.close();
        }
      });
      const chunkHex: string[] = [];
      for (let i = 0; r.chunks && i < r.chunks.length; i += 16)
        chunkHex.push(r.chunks.subarray(i, i + 16).toString('hex'));
      if (values.json) {
        printJson({
          whole: r.whole.toString('hex'),
          bytes: r.bytes,
          chunkSize,
          seed: seedText,
          chunks: values.chunks ? chunkHex : undefined,
        });
      } else {
        process.stdout.write(
          `${r.whole.toString('hex')}  ${image}${diffs.length ? ` + ${diffs.length} wdiffs` : ''}\n`,
        );
        chunkHex.forEach((h, i) => process.stdout.write(`${h}  chunk ${i} @${i * chunkSize}\n`));
      }
    },
  },
];

for (const c of commands) {
  c.optionHelp = { ...sharedHelp, ...c.optionHelp };
  c.placeholders = placeholders;
}

function writeFully(fd: number, buf: Buffer, position: number | null): void {
  let done = 0;
  while (done < buf.length) {
    done += fs.writeSync(fd, buf, done, buf.length - done, position === null ? null : position + done);
  }
}
