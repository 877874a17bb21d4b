// The format oracle: a plain-JS reference of the on-disk formats (superblock, logpacks, wlog, sorted and indexed
// wdiff), written from docs/formats.md independently of the C++ code, so that the golden and corruption tests can
// both build files the addon did not write and take apart files it did write.

export const LB = 512;
export const U64_MAX = 2n ** 64n - 1n;

/** WalB's checksum (docs/formats.md §0.2), in plain JS: sum of LE u32 words onto the salt, tail zero-padded, negated. */
export function csum(buf: Buffer, salt = 0): number {
  let s = salt >>> 0;
  let i = 0;
  for (; i + 4 <= buf.length; i += 4) s = (s + buf.readUInt32LE(i)) >>> 0;
  if (i < buf.length) {
    const tail = Buffer.alloc(4);
    buf.copy(tail, 0, i);
    s = (s + tail.readUInt32LE(0)) >>> 0;
  }
  return (~s + 1) >>> 0;
}

/** Self-checksum: zero the u32 at `field` (relative to the block), sum the block and store the result there. */
export function reseal(block: Buffer, field: number, salt = 0): Buffer {
  block.writeUInt32LE(0, field);
  block.writeUInt32LE(csum(block, salt), field);
  return block;
}

/**
 * A super sector block as docs/formats.md §1.2 lays it out (sector_type u16 @0, version u16 @2, checksum u32 @4, logical_bs @8,
 * physical_bs @12, metadata_size @16, salt @20, uuid @24, name @40, ring_buffer_size u64 @72, oldest @80,
 * written @88, device_size @96, zero to the end of the pbs block), checksummed with salt 0 by the plain-JS csum.
 */
export function buildSuperSector(
  pbs: number,
  s: {
    salt: number;
    uuid: string;
    name: string;
    ring: number;
    deviceSize: number;
    oldest?: number;
    written?: number;
  },
): Buffer {
  const b = Buffer.alloc(pbs);
  b.writeUInt16LE(1, 0); // sector_type: super
  b.writeUInt16LE(2, 2); // version
  b.writeUInt32LE(512, 8); // logical_bs
  b.writeUInt32LE(pbs, 12); // physical_bs
  b.writeUInt32LE(0, 16); // metadata_size
  b.writeUInt32LE(s.salt, 20);
  Buffer.from(s.uuid, 'hex').copy(b, 24);
  b.write(s.name, 40, 'latin1');
  b.writeBigUInt64LE(BigInt(s.ring), 72);
  b.writeBigUInt64LE(BigInt(s.oldest ?? 0), 80);
  b.writeBigUInt64LE(BigInt(s.written ?? 0), 88);
  b.writeBigUInt64LE(BigInt(s.deviceSize), 96);
  return reseal(b, 4, 0);
}

export function capacityPb(pbs: number, lb: number): number {
  return Math.ceil((lb * LB) / pbs);
}

export function uuidBytes(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

// ---------------------------------------------------------------------------------------------- wlog / logpacks

export interface WlogHeaderSpec {
  pbs: number;
  salt: number;
  uuid: Buffer;
  beginLsid: bigint | number;
  endLsid?: bigint | number;
}

/** wlog header (docs/formats.md §4): 4096 bytes, 56 meaningful, self-checksum at 8 with salt 0. */
export function buildWlogHeader(h: WlogHeaderSpec): Buffer {
  const b = Buffer.alloc(4096);
  b.writeUInt16LE(4, 0); // sector_type
  b.writeUInt16LE(2, 2); // version
  b.writeUInt16LE(4096, 4); // header_size
  b.writeUInt32LE(h.salt >>> 0, 12);
  b.writeUInt32LE(512, 16); // logical_bs
  b.writeUInt32LE(h.pbs, 20);
  h.uuid.copy(b, 24, 0, 16);
  b.writeBigUInt64LE(BigInt(h.beginLsid), 40);
  b.writeBigUInt64LE(BigInt(h.endLsid ?? U64_MAX), 48);
  return reseal(b, 8, 0);
}

export interface LogRecordSpec {
  kind: 'normal' | 'padding' | 'discard';
  offset?: number; // LB
  ioSize: number; // LB
  data?: Buffer; // normal: at least ioSize*512 bytes; may be PB-rounded with junk in the tail
}

export interface BuiltPack {
  header: Buffer;
  data: Buffer;
  lsid: number;
  nextLsid: number;
}

/**
 * A logpack as the driver lays it out (docs/formats.md §2.1-2.3): records in order, data records contiguous
 * from lsid+1, discards at the lsid where the next data would start, record checksums over io_size*512 bytes
 * with the salt, header self-checksum last.
 */
export function buildLogpack(pbs: number, salt: number, lsid: number, recs: LogRecordSpec[]): BuiltPack {
  const header = Buffer.alloc(pbs);
  const datas: Buffer[] = [];
  let total = 0;
  let nPadding = 0;
  recs.forEach((r, i) => {
    const at = 24 + 32 * i;
    const flags = r.kind === 'normal' ? 1 : r.kind === 'padding' ? 3 : 5;
    const lsidLocal = 1 + total;
    let rc = 0;
    if (r.kind !== 'discard') {
      const pb = capacityPb(pbs, r.ioSize);
      const area = Buffer.alloc(pb * pbs);
      if (r.data) r.data.copy(area, 0, 0, Math.min(r.data.length, area.length));
      if (r.kind === 'normal') rc = csum(area.subarray(0, r.ioSize * LB), salt);
      else nPadding++;
      datas.push(area);
      total += pb;
    }
    header.writeUInt32LE(rc, at);
    header.writeUInt32LE(flags, at + 4);
    header.writeBigUInt64LE(BigInt(r.offset ?? 0), at + 8);
    header.writeUInt32LE(r.ioSize, at + 16);
    header.writeUInt16LE(lsidLocal, at + 20);
    header.writeBigUInt64LE(BigInt(lsid + lsidLocal), at + 24);
  });
  header.writeUInt16LE(3, 4); // sector_type
  header.writeUInt16LE(total, 6); // total_io_size
  header.writeBigUInt64LE(BigInt(lsid), 8);
  header.writeUInt16LE(recs.length, 16);
  header.writeUInt16LE(nPadding, 18);
  reseal(header, 0, salt);
  return { header, data: Buffer.concat(datas), lsid, nextLsid: lsid + 1 + total };
}

/** End block (docs/formats.md §2.6): sector_type 3, logpack_lsid 2^64-1, nothing else; checksum ~salt. */
export function buildEndBlock(pbs: number, salt: number): Buffer {
  const b = Buffer.alloc(pbs);
  b.writeUInt16LE(3, 4);
  b.writeBigUInt64LE(U64_MAX, 8);
  return reseal(b, 0, salt);
}

/** A whole wlog file: header, the packs one after the other from beginLsid, and an end block. */
export function buildWlog(h: WlogHeaderSpec, packs: LogRecordSpec[][], opts: { endBlock?: boolean } = {}) {
  const parts = [buildWlogHeader(h)];
  const built: BuiltPack[] = [];
  let lsid = Number(h.beginLsid);
  for (const recs of packs) {
    const p = buildLogpack(h.pbs, h.salt, lsid, recs);
    built.push(p);
    parts.push(p.header, p.data);
    lsid = p.nextLsid;
  }
  if (opts.endBlock !== false) parts.push(buildEndBlock(h.pbs, h.salt));
  return { bytes: Buffer.concat(parts), packs: built, endLsid: lsid };
}

export interface ParsedLogRecord {
  at: number; // byte offset of the record in the file
  checksum: number;
  flags: number;
  offset: number;
  ioSize: number;
  lsidLocal: number;
  reserved: number;
  lsid: number;
  dataAt: number; // byte offset of the record's data in the file (discards: where the next data would be)
}

export interface ParsedLogpack {
  at: number; // byte offset of the header in the file
  checksum: number;
  sectorType: number;
  totalIoSize: number;
  lsid: number;
  nRecords: number;
  nPadding: number;
  reserved: number;
  records: ParsedLogRecord[];
  dataAt: number;
  end: number; // byte offset after the pack's data
}

export interface ParsedWlog {
  sectorType: number;
  version: number;
  headerSize: number;
  checksum: number;
  salt: number;
  logicalBs: number;
  pbs: number;
  uuid: string;
  beginLsid: bigint;
  endLsid: bigint;
  packs: ParsedLogpack[];
  endBlockAt: number; // -1 when the file has no end block
}

/** Takes a well-formed wlog apart by the byte offsets of docs/formats.md §4 (no validation beyond what walking needs). */
export function parseWlog(b: Buffer): ParsedWlog {
  const pbs = b.readUInt32LE(20);
  const w: ParsedWlog = {
    sectorType: b.readUInt16LE(0),
    version: b.readUInt16LE(2),
    headerSize: b.readUInt16LE(4),
    checksum: b.readUInt32LE(8),
    salt: b.readUInt32LE(12),
    logicalBs: b.readUInt32LE(16),
    pbs,
    uuid: b.subarray(24, 40).toString('hex'),
    beginLsid: b.readBigUInt64LE(40),
    endLsid: b.readBigUInt64LE(48),
    packs: [],
    endBlockAt: -1,
  };
  let at = 4096;
  while (at + pbs <= b.length) {
    const nRecords = b.readUInt16LE(at + 16);
    if (nRecords === 0) {
      w.endBlockAt = at;
      break;
    }
    const p: ParsedLogpack = {
      at,
      checksum: b.readUInt32LE(at),
      sectorType: b.readUInt16LE(at + 4),
      totalIoSize: b.readUInt16LE(at + 6),
      lsid: Number(b.readBigUInt64LE(at + 8)),
      nRecords,
      nPadding: b.readUInt16LE(at + 18),
      reserved: b.readUInt32LE(at + 20),
      records: [],
      dataAt: at + pbs,
      end: 0,
    };
    for (let i = 0; i < nRecords; i++) {
      const r = at + 24 + 32 * i;
      const lsidLocal = b.readUInt16LE(r + 20);
      p.records.push({
        at: r,
        checksum: b.readUInt32LE(r),
        flags: b.readUInt32LE(r + 4),
        offset: Number(b.readBigUInt64LE(r + 8)),
        ioSize: b.readUInt32LE(r + 16),
        lsidLocal,
        reserved: b.readUInt16LE(r + 22),
        lsid: Number(b.readBigUInt64LE(r + 24)),
        dataAt: p.dataAt + (lsidLocal - 1) * pbs,
      });
    }
    p.end = p.dataAt + p.totalIoSize * pbs;
    w.packs.push(p);
    at = p.end;
  }
  return w;
}

// ------------------------------------------------------------------------------------------------------ wdiff

export const COMPRESSION_CODES = ['none', 'gzip', 'snappy', 'lzma', 'lz4', 'zstd'] as const;

/** wdiff file header (docs/formats.md §5.1): 32 bytes, self-checksum at 0 with salt 0. */
export function buildWdiffHeader(type: number, uuid: Buffer): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt16LE(2, 4);
  b.writeUInt8(type, 6);
  uuid.copy(b, 16, 0, 16);
  return reseal(b, 0, 0);
}

export interface DiffRecordSpec {
  address: number;
  blocks: number;
  kind?: 'normal' | 'allzero' | 'discard';
  compression?: number; // code, default 0
  stored?: Buffer; // the stored (compressed) bytes of a normal record
}

function diffFlags(kind: DiffRecordSpec['kind']): number {
  return kind === 'allzero' ? 2 : kind === 'discard' ? 4 : 0;
}

/** One sorted-wdiff pack (docs/formats.md §5.2): 4096-byte header, records at 16, then the stored bytes back to back. */
export function buildSortedPack(recs: DiffRecordSpec[]): Buffer {
  const h = Buffer.alloc(4096);
  const datas: Buffer[] = [];
  let off = 0;
  recs.forEach((r, i) => {
    const at = 16 + 32 * i;
    const stored =
      r.kind === undefined || r.kind === 'normal' ? (r.stored ?? Buffer.alloc(0)) : Buffer.alloc(0);
    h.writeBigUInt64LE(BigInt(r.address), at);
    h.writeUInt32LE(r.blocks, at + 8);
    h.writeUInt8(diffFlags(r.kind), at + 12);
    h.writeUInt8(r.compression ?? 0, at + 13);
    h.writeUInt32LE(off, at + 16);
    h.writeUInt32LE(stored.length, at + 20);
    h.writeUInt32LE(stored.length > 0 ? csum(stored, 0) : 0, at + 24);
    datas.push(stored);
    off += stored.length;
  });
  h.writeUInt16LE(recs.length, 4);
  h.writeUInt32LE(off, 8);
  reseal(h, 0, 0);
  return Buffer.concat([h, ...datas]);
}

/** The end pack: flags 0x01, everything else zero but the checksum. */
export function buildEndPack(): Buffer {
  const h = Buffer.alloc(4096);
  h.writeUInt8(1, 6);
  return reseal(h, 0, 0);
}

export function buildSortedWdiff(uuid: Buffer, packs: DiffRecordSpec[][], opts: { endPack?: boolean } = {}) {
  const parts = [buildWdiffHeader(0, uuid), ...packs.map(buildSortedPack)];
  if (opts.endPack !== false) parts.push(buildEndPack());
  return Buffer.concat(parts);
}

export interface ParsedSortedRecord {
  at: number;
  address: number;
  blocks: number;
  flags: number;
  compression: number;
  reserved1: number;
  dataOffset: number;
  dataSize: number;
  checksum: number;
  reserved2: number;
  stored: Buffer;
}

export interface ParsedSortedPack {
  at: number;
  checksum: number;
  nRecords: number;
  flags: number;
  reserved0: number;
  totalSize: number;
  reserved1: number;
  records: ParsedSortedRecord[];
}

export function parseSortedWdiff(b: Buffer): { packs: ParsedSortedPack[]; endPackAt: number } {
  const packs: ParsedSortedPack[] = [];
  let at = 32;
  let endPackAt = -1;
  while (at + 4096 <= b.length) {
    const p: ParsedSortedPack = {
      at,
      checksum: b.readUInt32LE(at),
      nRecords: b.readUInt16LE(at + 4),
      flags: b.readUInt8(at + 6),
      reserved0: b.readUInt8(at + 7),
      totalSize: b.readUInt32LE(at + 8),
      reserved1: b.readUInt32LE(at + 12),
      records: [],
    };
    if (p.flags & 1) {
      endPackAt = at;
      break;
    }
    const dataAt = at + 4096;
    for (let i = 0; i < p.nRecords; i++) {
      const r = at + 16 + 32 * i;
      const dataOffset = b.readUInt32LE(r + 16);
      const dataSize = b.readUInt32LE(r + 20);
      p.records.push({
        at: r,
        address: Number(b.readBigUInt64LE(r)),
        blocks: b.readUInt32LE(r + 8),
        flags: b.readUInt8(r + 12),
        compression: b.readUInt8(r + 13),
        reserved1: b.readUInt16LE(r + 14),
        dataOffset,
        dataSize,
        checksum: b.readUInt32LE(r + 24),
        reserved2: b.readUInt32LE(r + 28),
        stored: b.subarray(dataAt + dataOffset, dataAt + dataOffset + dataSize),
      });
    }
    packs.push(p);
    at = dataAt + p.totalSize;
  }
  return { packs, endPackAt };
}

export interface IndexRecordSpec {
  address: number;
  blocks: number;
  kind?: 'normal' | 'allzero' | 'discard';
  compression?: number;
  dataOffset?: number;
  dataSize?: number;
  ioOffset?: number;
  origBlocks?: number;
  ioChecksum?: number;
}

/** One 48-byte index record (docs/formats.md §5.3) with its self-checksum at 44. */
export function buildIndexRecord(r: IndexRecordSpec): Buffer {
  const b = Buffer.alloc(48);
  b.writeBigUInt64LE(BigInt(r.address), 0);
  b.writeUInt32LE(r.blocks, 8);
  b.writeUInt8(diffFlags(r.kind), 12);
  b.writeUInt8(r.compression ?? 0, 13);
  b.writeBigUInt64LE(BigInt(r.dataOffset ?? 0), 16);
  b.writeUInt32LE(r.dataSize ?? 0, 24);
  b.writeUInt32LE(r.ioOffset ?? 0, 28);
  b.writeUInt32LE(r.origBlocks ?? 0, 32);
  b.writeUInt32LE(r.ioChecksum ?? 0, 40);
  return reseal(b, 44, 0);
}

/** 24-byte trailer: index_offset u64, n_records u32, n_data u32, rsv u32, self-checksum u32 at 20. */
export function buildIndexTrailer(indexOffset: number, nRecords: number, nData: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(BigInt(indexOffset), 0);
  b.writeUInt32LE(nRecords, 8);
  b.writeUInt32LE(nData, 12);
  return reseal(b, 20, 0);
}

export interface ParsedIndexRecord {
  at: number;
  address: number;
  blocks: number;
  flags: number;
  compression: number;
  reserved1: number;
  dataOffset: number;
  dataSize: number;
  ioOffset: number;
  origBlocks: number;
  reserved2: number;
  ioChecksum: number;
  recChecksum: number;
}

export function parseIndexedWdiff(b: Buffer) {
  const t = b.length - 24;
  const trailer = {
    at: t,
    indexOffset: Number(b.readBigUInt64LE(t)),
    nRecords: b.readUInt32LE(t + 8),
    nData: b.readUInt32LE(t + 12),
    reserved: b.readUInt32LE(t + 16),
    checksum: b.readUInt32LE(t + 20),
  };
  const records: ParsedIndexRecord[] = [];
  for (let at = trailer.indexOffset; at + 48 <= t; at += 48) {
    records.push({
      at,
      address: Number(b.readBigUInt64LE(at)),
      blocks: b.readUInt32LE(at + 8),
      flags: b.readUInt8(at + 12),
      compression: b.readUInt8(at + 13),
      reserved1: b.readUInt16LE(at + 14),
      dataOffset: Number(b.readBigUInt64LE(at + 16)),
      dataSize: b.readUInt32LE(at + 24),
      ioOffset: b.readUInt32LE(at + 28),
      origBlocks: b.readUInt32LE(at + 32),
      reserved2: b.readUInt32LE(at + 36),
      ioChecksum: b.readUInt32LE(at + 40),
      recChecksum: b.readUInt32LE(at + 44),
    });
  }
  return { trailer, records };
}
