// The sending side of a hash comparison (docs/servers.md §7.6, §7.7.1, §7.7.2): the receiver streams the chunk
// hashes of its image in address order; this side hashes the same chunks of its own image (a storage's data device,
// a source archive's base image, or a source archive's snapshot read virtually) and yields the chunks that differ as
// pre-encoded HashSyncRequest data messages. The storage's hash backup and the archive's resync and hash
// replication use it.
import type fs from 'node:fs';
import { bulkMessage } from './bulk-message';
import { WalbError, cancelled } from './errors';
import type { TransferReply__Output } from '../generated/walb/v1/TransferReply';
import { native, type HashResult, type VirtualFull } from '../native';

/** HashSyncRequest.data's field number (proto/walb/v1/archive.proto): differing chunks are built pre-encoded. */
const HASH_SYNC_DATA_FIELD = 2;
/** Differing chunks read ahead of the one being sent. */
const READS_AHEAD = 4;

export interface ChunkSpec {
  chunkSize: number;
  seed: number;
  /** Read rate limit of the scan [bytes/s], 0 = none. */
  bytesPerSec: number;
}

/** The operation a comparison runs in: its progress in bytes compared, and its cancel. */
export interface CompareOp {
  progress(done: number, total?: number): void;
  signal: AbortSignal;
}

export interface DifferingChunk {
  length: number;
  message: ReturnType<typeof bulkMessage>['message'];
}

/** Waits `ms`, or less when `signal` aborts (the caller then checks it). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/** The image a comparison reads: chunk hashes of a range, and the bytes of a differing chunk. */
export interface ComparedImage {
  hash(range: { offset: number; length: number; chunkSize: number; seed: number }): Promise<HashResult>;
  /** Fills `into` with the bytes at `at`. */
  read(at: number, into: Buffer): Promise<void>;
}

/** A file or device (open as `fh`), hashed natively where it lies. */
export function fileImage(path: string, fh: fs.promises.FileHandle): ComparedImage {
  return {
    hash: (range) => native.hashImage(path, { ...range, chunks: true }),
    read: async (at, into) => {
      const { bytesRead } = await fh.read(into, 0, into.length, at);
      if (bytesRead !== into.length)
        throw new WalbError('IO_ERROR', `short read at ${at}: ${bytesRead} of ${into.length} bytes`);
    },
  };
}

/** A snapshot read virtually (a base image and the diffs up to it, docs/formats.md §5.4). */
export function virtualImage(image: VirtualFull): ComparedImage {
  return {
    hash: (range) => image.hash({ ...range, chunks: true }),
    read: async (at, into) => {
      const bytes = await image.read({ offset: at, length: into.length });
      if (bytes.length !== into.length)
        throw new WalbError('IO_ERROR', `short read at ${at}: ${bytes.length} of ${into.length} bytes`);
      bytes.copy(into);
    },
  };
}

/** Chunk `[at, at + n)` of the image as a pre-encoded data message. */
async function readChunk(image: ComparedImage, at: number, n: number): Promise<DifferingChunk> {
  const m = bulkMessage(HASH_SYNC_DATA_FIELD, at, n);
  await image.read(at, m.data);
  return { length: n, message: m.message };
}

/**
 * The chunks of `image` whose hash differs from the receiver's, in address order, as pre-encoded data messages.
 * The image is hashed natively one message of the receiver's hashes ahead, so that both ends hash at once; a
 * differing chunk is then read again whole.
 */
export async function* differingChunks(
  image: ComparedImage,
  size: number,
  spec: ChunkSpec,
  reply: () => Promise<TransferReply__Output>,
  op: CompareOp,
): AsyncIterable<DifferingChunk> {
  const { chunkSize, seed, bytesPerSec } = spec;
  const started = Date.now();
  const hashOf = async (offset: number, length: number) => {
    // The rate limit holds a batch back until the scan is under the limit again.
    const early = bytesPerSec > 0 ? (offset / bytesPerSec) * 1000 - (Date.now() - started) : 0;
    if (early > 0) await sleep(early, op.signal);
    return image.hash({ offset, length, chunkSize, seed });
  };
  let ahead: { offset: number; result: Promise<HashResult> } | undefined;
  let offset = 0;
  const reads: Promise<DifferingChunk>[] = [];
  try {
    while (offset < size) {
      if (op.signal.aborted) throw cancelled();
      const r = await reply();
      const theirs = r.hashes;
      if (!theirs || theirs.offset !== offset || theirs.hashes.length === 0 || theirs.hashes.length % 16)
        throw new WalbError('INVALID_ARGUMENT', `expected the chunk hashes from ${offset}`);
      const length = Math.min((theirs.hashes.length / 16) * chunkSize, size - offset);
      const mine = ahead?.offset === offset ? ahead.result : hashOf(offset, length);
      ahead =
        offset + length < size
          ? { offset: offset + length, result: hashOf(offset + length, length) }
          : undefined;
      const ours = (await mine).chunks!;
      const differing: number[] = [];
      for (let k = 0; k * chunkSize < length; k++)
        if (ours.compare(theirs.hashes, k * 16, k * 16 + 16, k * 16, k * 16 + 16) !== 0)
          differing.push(offset + k * chunkSize);
      // A few reads in flight, so that the next chunks are read while this one goes out.
      for (let next = 0; next < differing.length || reads.length;) {
        while (reads.length < READS_AHEAD && next < differing.length) {
          const at = differing[next++];
          const read = readChunk(image, at, Math.min(chunkSize, size - at));
          read.catch(() => undefined); // its failure surfaces when it is awaited in turn
          reads.push(read);
        }
        yield await reads.shift()!;
      }
      offset += length;
      op.progress(offset, size);
    }
    // Cancelled during the last batch: no end is sent, so both sides roll back.
    if (op.signal.aborted) throw cancelled();
  } finally {
    // A stopped scan must not leave a hash job or a read on an image the caller is about to let go.
    await Promise.allSettled([ahead?.result, ...reads]);
  }
}
