// fileBulks: a file's bytes as pre-encoded bulk messages, zero bulks without a message, reads ahead, and a rate
// limit that the scan never exceeds.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadProto } from '../../src/common/grpc';
import { fileBulks } from '../../src/common/transfer';
import { makeTempDir, removeDir } from '../temp-files';

const { definition } = loadProto('walb/v1/archive.proto');
const decode = (definition['walb.v1.Archive'] as Record<string, { requestDeserialize(b: Buffer): unknown }>)
  .FullSync.requestDeserialize;

async function scan(file: string, bulk: number, rate = 0) {
  const fh = await fs.promises.open(file, 'r');
  const size = (await fh.stat()).size;
  const out: { offset: number; length: number; data?: Buffer }[] = [];
  try {
    for await (const b of fileBulks(fh, size, bulk, 2, 4, rate)) {
      const m = b.message && (decode(b.message.bytes) as { data: { offset: number; data: Buffer } });
      if (m) t0(m.data.offset === b.offset);
      out.push({ offset: b.offset, length: b.length, data: m ? Buffer.from(m.data.data) : undefined });
      b.message?.release?.();
    }
  } finally {
    await fh.close();
  }
  return out;
}

function t0(ok: boolean): void {
  if (!ok) throw new Error('a bulk message carries another offset than its bulk');
}

test('every bulk comes in order with its bytes; all-zero bulks carry no message; the tail bulk is short', async (t) => {
  const dir = makeTempDir('file-bulks');
  try {
    const file = path.join(dir, 'img');
    const data = Buffer.concat([
      crypto.randomBytes(1 << 20),
      Buffer.alloc(1 << 20),
      crypto.randomBytes((1 << 20) + 4096),
    ]);
    fs.writeFileSync(file, data);
    const bulks = await scan(file, 1 << 20);
    t.deepEqual(
      bulks.map((b) => [b.offset, b.length, b.data !== undefined]),
      [
        [0, 1 << 20, true],
        [1 << 20, 1 << 20, false],
        [2 << 20, 1 << 20, true],
        [3 << 20, 4096, true],
      ],
    );
    const back = Buffer.alloc(data.length);
    for (const b of bulks) b.data?.copy(back, b.offset);
    t.true(back.equals(data));
  } finally {
    removeDir(dir);
  }
});

test('with a rate limit the scan never goes faster than the limit', async (t) => {
  const dir = makeTempDir('file-bulks-rate');
  try {
    const file = path.join(dir, 'img');
    fs.writeFileSync(file, crypto.randomBytes(4 << 20));
    const started = Date.now();
    const bulks = await scan(file, 512 << 10, 8 << 20); // 8 bulks at 16 per second
    const ms = Date.now() - started;
    t.is(bulks.length, 8);
    // The last bulk may start once 7/16 s have passed.
    t.true(ms >= 430, `${ms} ms`);
  } finally {
    removeDir(dir);
  }
});
