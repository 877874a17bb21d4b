// Bulk data messages built around the bytes instead of copied into an encoder: the caller reads straight into
// `data`, then sends `message` (an EncodedMessage) — one buffer per bulk, no copy on the JS thread.
// Shape on the wire: `{ [field]: { offset (1): uint64, data (2): bytes } }`, e.g. FullSyncRequest.data.
import { EncodedMessage } from './grpc';

function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

export interface BulkMessage {
  message: EncodedMessage;
  /** The data area inside the message, `length` bytes, to be filled before the message is sent. */
  data: Buffer;
}

/** The most header bytes a bulk message can have (tags and varints of 64-bit values). */
export const BULK_HEAD_MAX = 2 + 10 + 1 + 10 + 1 + 10;

/**
 * Builds the message in `backing` (at least BULK_HEAD_MAX + length bytes) when given, else in a new buffer;
 * `release` goes with the message (see EncodedMessage).
 */
export function bulkMessage(
  field: number,
  offset: number,
  length: number,
  backing?: Buffer,
  release?: () => void,
): BulkMessage {
  const inner = 1 + varintLength(offset) + 1 + varintLength(length) + length;
  const outerTag = field * 8 + 2;
  const head = varintLength(outerTag) + varintLength(inner) + inner - length;
  const buf = backing ? backing.subarray(0, head + length) : Buffer.allocUnsafe(head + length);
  let pos = writeVarint(buf, 0, outerTag);
  pos = writeVarint(buf, pos, inner);
  buf[pos++] = 0x08; // offset: field 1, varint
  pos = writeVarint(buf, pos, offset);
  buf[pos++] = 0x12; // data: field 2, length-delimited
  pos = writeVarint(buf, pos, length);
  return { message: new EncodedMessage(buf, release), data: buf.subarray(pos) };
}
