// Golden vectors for WalB's checksum, worked out by hand from the definition (docs/formats.md §0):
// sum the little-endian u32 words onto the salt modulo 2^32, zero-pad a 1-3 byte tail on the right, negate.
import test from 'ava';
import { native } from '../../src/native';

test('checksum of nothing is the negated salt', (t) => {
  t.is(native.checksum(Buffer.alloc(0), 0), 0);
  t.is(native.checksum(Buffer.alloc(0), 1), 0xffffffff);
  t.is(native.checksum(Buffer.alloc(0), 0x12345678), 0xedcba988);
});

test('checksum sums little-endian words and wraps at 2^32', (t) => {
  // words 1 and 0xffffffff: sum = 0 (mod 2^32) -> negated 0
  const b = Buffer.from([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  t.is(native.checksum(b, 0), 0);
  // one word 0x04030201 -> -(0x04030201) = 0xfbfcfdff
  t.is(native.checksum(Buffer.from([1, 2, 3, 4]), 0), 0xfbfcfdff);
});

test('checksum zero-pads a tail of 1-3 bytes on the right', (t) => {
  // "walb!" = words 0x626c6177 and tail '!' = 0x21 -> sum 0x626c6198 -> negated 0x9d939e68
  t.is(native.checksum(Buffer.from('walb!'), 0), 0x9d939e68);
});

test('a block with its own checksum stored in it sums to zero', (t) => {
  const block = Buffer.alloc(512);
  block.write('some header', 8);
  const csum = native.checksum(block, 0xabcdef01);
  block.writeUInt32LE(csum, 0);
  t.is(native.checksum(block, 0xabcdef01), 0);
  t.not(native.checksum(block, 0xabcdef02), 0);
});

test('the end block of a log has checksum ~salt', (t) => {
  // sector_type 3 at offset 4, logpack_lsid 2^64-1 at offset 8: words 3, 0xffffffff, 0xffffffff -> sum salt+1
  for (const salt of [0, 0x12345678, 0xffffffff]) {
    const block = Buffer.alloc(4096);
    block.writeUInt16LE(3, 4);
    block.writeBigUInt64LE(2n ** 64n - 1n, 8);
    t.is(native.checksum(block, salt), ~salt >>> 0);
  }
});
