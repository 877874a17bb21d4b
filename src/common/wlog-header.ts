// The 4096-byte header of a wlog file (docs/formats.md §4), for servers that build wlogs from logpacks they
// receive. The checksum comes from the addon.
import { native } from '../native';

export const WLOG_HEADER_SIZE = 4096;

export function buildWlogHeader(h: {
  pbs: number;
  salt: number;
  uuid: string;
  beginLsid: number;
  endLsid?: bigint;
}): Buffer {
  const b = Buffer.alloc(WLOG_HEADER_SIZE);
  b.writeUInt16LE(4, 0); // sector_type: wlog header
  b.writeUInt16LE(2, 2); // version
  b.writeUInt16LE(WLOG_HEADER_SIZE, 4);
  b.writeUInt32LE(h.salt >>> 0, 12);
  b.writeUInt32LE(512, 16);
  b.writeUInt32LE(h.pbs, 20);
  Buffer.from(h.uuid.padEnd(32, '0').slice(0, 32), 'hex').copy(b, 24);
  b.writeBigUInt64LE(BigInt(h.beginLsid), 40);
  b.writeBigUInt64LE(h.endLsid ?? 2n ** 64n - 1n, 48);
  b.writeUInt32LE(native.checksum(b, 0), 8);
  return b;
}
