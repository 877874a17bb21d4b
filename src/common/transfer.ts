// Both sides of a data transfer stream (docs/servers.md §3.6): header first; the receiver accepts or rejects it
// with a typed reason; then the data messages (respecting gRPC flow control) and the end; the receiver answers
// `done` once everything is durable. runTransfer sends, serveTransfer receives.
import type * as grpc from '@grpc/grpc-js';
import type { FileHandle } from 'node:fs/promises';
import { BULK_HEAD_MAX, bulkMessage } from './bulk-message';
import { WalbError, cancelled, errorCode, errorMessage } from './errors';
import type { ForegroundSlots } from './foreground';
import { EncodedMessage, fromServiceError, toServiceError } from './grpc';
import type { Logger } from './log';
import type { Accepted, Accepted__Output } from '../generated/walb/v1/Accepted';
import type { TransferReply, TransferReply__Output } from '../generated/walb/v1/TransferReply';
import type { RejectReason } from '../generated/walb/v1/RejectReason';
import { native, type BulkSenderOptions } from '../native';

/** The method of the archive's native bulk receiver (bulk.proto, service ArchiveBulk). */
export const FULL_SYNC_BULK = '/walb.v1.ArchiveBulk/FullSyncBulk';

/**
 * Sends a file's bytes to a native bulk receiver from the addon's threads, reporting progress and cancelled by
 * the operation's signal. Returns the bytes sent (zero bulks are skipped), or `unreachable` when the receiver
 * could not be reached at all (nothing was sent, so the caller may take another way).
 */
export async function sendBulks(
  opts: BulkSenderOptions,
  op: { progress(done: number, total?: number): void; signal: AbortSignal },
): Promise<{ sent: number } | { unreachable: string }> {
  const sender = new native.BulkSender(opts);
  const cancel = () => sender.cancel();
  op.signal.addEventListener('abort', cancel);
  try {
    if (op.signal.aborted) throw cancelled();
    return { sent: (await sender.run((done, total) => op.progress(done, total))).sent };
  } catch (err) {
    if (errorCode(err) === 'CANCELLED') throw cancelled();
    if (errorCode(err) === 'UNAVAILABLE' && sender.sent() === 0) return { unreachable: errorMessage(err) };
    throw err;
  } finally {
    op.signal.removeEventListener('abort', cancel);
  }
}

export type TransferResult = { ok: true } | { ok: false; reason: RejectReason; message: string };

export interface TransferOptions {
  /**
   * Longest wait for the receiver — its answer to the header, room to send (flow control) — before the transfer
   * fails as UNAVAILABLE, so that a hung peer (a stopped process, a black-holed link) cannot hold a sender
   * forever (WalB's socket timeout). The final acknowledgement, which waits for an fsync, gets six times as
   * long. 0: no limit.
   */
  idleTimeoutMs?: number;
}

export async function runTransfer<Req>(
  stream: grpc.ClientDuplexStream<Req, TransferReply__Output>,
  header: Req,
  /**
   * The data messages; the receiver's Accepted may say where else to send the bytes. `reply` waits for the
   * receiver's next answer before its done (a hash backup's chunk hashes).
   */
  body: (accepted: Accepted__Output, reply: () => Promise<TransferReply__Output>) => AsyncIterable<Req>,
  /** The closing message, or a function that builds it once the body is sent. */
  end: Req | (() => Promise<Req>),
  opts: TransferOptions = {},
): Promise<TransferResult> {
  const replies: TransferReply__Output[] = [];
  let failure: Error | undefined;
  let ended = false;
  let wake: (() => void) | undefined;
  const fail = (err: Error) => {
    failure ??= err;
    wake?.();
  };
  // Replies wait here until read; beyond a few, the stream is paused so that gRPC's flow control holds the
  // receiver back (a hash backup's hashes arrive faster than the disk compares them).
  const QUEUED_REPLIES = 16;
  stream.on('data', (r: TransferReply__Output) => {
    replies.push(r);
    if (replies.length >= QUEUED_REPLIES) stream.pause();
    wake?.();
  });
  stream.on('error', (e: grpc.ServiceError) => fail(fromServiceError(e)));
  stream.on('end', () => {
    ended = true;
    wake?.();
  });
  // One wait at a time (the code below is sequential); the watchdog fails it when it lasts too long.
  let deadline = 0;
  let waitLimitMs = 0;
  const wait = async (ready: () => boolean, limitMs: number): Promise<void> => {
    deadline = limitMs > 0 ? Date.now() + limitMs : 0;
    waitLimitMs = limitMs;
    try {
      while (!ready() && !failure && !ended) await new Promise<void>((r) => (wake = r));
    } finally {
      deadline = 0;
    }
    if (failure) throw failure;
  };
  const idle = opts.idleTimeoutMs ?? 0;
  const watchdog = setInterval(() => {
    if (deadline && Date.now() > deadline)
      fail(new WalbError('UNAVAILABLE', `the receiver did not answer within ${waitLimitMs / 1000} s`));
  }, 200);
  watchdog.unref();
  const reply = async (limitMs = idle): Promise<TransferReply__Output> => {
    await wait(() => replies.length > 0, limitMs);
    const r = replies.shift();
    if (replies.length < QUEUED_REPLIES && stream.isPaused()) stream.resume();
    if (!r) throw new WalbError('UNAVAILABLE', 'the receiver closed the transfer without an answer');
    return r;
  };
  try {
    stream.write(header);
    const first = await reply();
    if (first.rejected) {
      stream.end();
      return { ok: false, reason: first.rejected.reason as RejectReason, message: first.rejected.message };
    }
    if (!first.accepted) throw new WalbError('INTERNAL', 'unexpected first reply of a transfer');
    for await (const m of body(first.accepted, () => reply())) {
      if (failure) throw failure;
      // A pre-encoded bulk's buffer goes back to its pool once gRPC has written (copied) it.
      if (!stream.write(m, m instanceof EncodedMessage ? m.release : undefined)) {
        let drained = false;
        const onDrain = () => {
          drained = true;
          wake?.();
        };
        stream.once('drain', onDrain);
        try {
          await wait(() => drained, idle);
        } finally {
          stream.off('drain', onDrain);
        }
        if (ended) throw new WalbError('UNAVAILABLE', 'the receiver ended the transfer early');
      }
    }
    stream.write(typeof end === 'function' ? await (end as () => Promise<Req>)() : end);
    stream.end();
    const last = await reply(idle * 6);
    if (!last.done) throw new WalbError('INTERNAL', 'the receiver did not confirm the transfer');
    return { ok: true };
  } catch (err) {
    stream.cancel();
    throw err;
  } finally {
    clearInterval(watchdog);
  }
}

/** A receiver's typed refusal of a transfer's header (the sender acts on the reason). */
export interface Rejection {
  reason: RejectReason;
  message: string;
}

/** What a receiver sees of a transfer it has taken. */
export interface IncomingTransfer<Req, End> {
  /** Answers the header: the sender may now send its data (elsewhere, when `accepted` names a bulk port). */
  accept(accepted?: Accepted): void;
  /** Sends an answer between accepted and done (a hash backup's hashes), waiting while gRPC has no room. */
  send(reply: TransferReply): Promise<void>;
  /** The data messages up to the end message; a stream that stops before its end message is TRUNCATED. */
  data(): AsyncIterable<Req>;
  /** The end message (once data() has finished). */
  end(): End;
}

export interface TransferReceiver<Req, Header, End> {
  /** For messages: 'wdiff transfer'. */
  kind: string;
  header(first: Req): Header | undefined;
  /** The end message's content, undefined when `m` is not the end. */
  endOf(m: Req): End | undefined;
  /** A typed rejection of the header, undefined to take it; may throw for a header that cannot be right. */
  check(header: Header): Rejection | undefined;
  /** The receiver's foreground limit: when it is reached, the transfer is rejected as BUSY. */
  slots: ForegroundSlots;
  /** Accepts, receives the data and makes it durable; the transfer is acknowledged once this resolves. */
  receive(header: Header, transfer: IncomingTransfer<Req, End>): Promise<void>;
  log: Logger;
}

/**
 * The receiving side of a transfer: the header, its check (a typed rejection, or BUSY when no foreground slot
 * is free), `receive`, then `done`. A failure ends the stream with its status and reason (toServiceError).
 */
export async function serveTransfer<Req, Header, End>(
  call: grpc.ServerDuplexStream<Req, TransferReply>,
  receiver: TransferReceiver<Req, Header, End>,
): Promise<void> {
  // Not destroyed when the sender's half ends: a truncated transfer must still get its status.
  const it = call.iterator({ destroyOnReturn: false }) as AsyncIterator<Req>;
  const reject = ({ reason, message }: Rejection) => {
    receiver.log('info', 'transfer-rejected', { kind: receiver.kind, reason, message });
    call.write({ rejected: { reason, message } });
    call.end();
  };
  let release: (() => void) | undefined;
  try {
    const first = await it.next();
    const header = first.done ? undefined : receiver.header(first.value);
    if (header === undefined)
      throw new WalbError('INVALID_ARGUMENT', `a ${receiver.kind} starts with its header`);
    const rejection = receiver.check(header);
    if (rejection) return reject(rejection);
    try {
      release = receiver.slots.take();
    } catch (err) {
      return reject({ reason: 'BUSY', message: errorMessage(err) });
    }
    let end: { value: End } | undefined;
    await receiver.receive(header, {
      accept: (accepted = {}) => call.write({ accepted }),
      send: (reply) => writeWithRoom(call, reply),
      data: async function* () {
        for (;;) {
          const m = await it.next();
          if (m.done) throw new WalbError('TRUNCATED', `the ${receiver.kind} ended before its end message`);
          const e = receiver.endOf(m.value);
          if (e !== undefined) {
            end = { value: e };
            return;
          }
          yield m.value;
        }
      },
      end: () => {
        if (!end) throw new WalbError('INTERNAL', `the ${receiver.kind}'s end was read before it came`);
        return end.value;
      },
    });
    call.write({ done: {} });
    call.end();
  } catch (err) {
    receiver.log('warn', 'transfer-failed', { kind: receiver.kind, error: errorMessage(err) });
    call.emit('error', toServiceError(err));
  } finally {
    release?.();
  }
}

/** Writes `reply`; when gRPC has no room, waits for it, or fails when the call goes away meanwhile. */
function writeWithRoom(
  call: grpc.ServerDuplexStream<unknown, TransferReply>,
  reply: TransferReply,
): Promise<void> {
  if (call.write(reply)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const settle = (err?: Error) => {
      call.off('drain', onDrain);
      call.off('cancelled', onGone);
      call.off('close', onGone);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => settle();
    const onGone = () => settle(new WalbError('UNAVAILABLE', 'the sender went away'));
    call.on('drain', onDrain);
    call.on('cancelled', onGone);
    call.on('close', onGone);
  });
}

/** A file's bytes as messages of about 1 MiB. */
export async function* fileChunks<Req>(
  file: string,
  wrap: (data: Buffer) => Req,
  chunk = 1 << 20,
): AsyncIterable<Req> {
  const fs = await import('node:fs');
  const fh = await fs.promises.open(file, 'r');
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(chunk);
      const { bytesRead } = await fh.read(buf, 0, chunk, null);
      if (bytesRead === 0) return;
      yield wrap(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

export interface FileBulk {
  offset: number;
  length: number;
  /** Absent when the bulk is all zeros (nothing to send: the receiver's image is sparse). */
  message?: EncodedMessage;
}

/**
 * Bytes [from, size) of an open file as bulk messages of `bulk` bytes (see bulk-message.ts) under message field
 * `field`, with `depth` reads in flight so that the disk and the network overlap.
 */
export async function* fileBulks(
  fh: FileHandle,
  size: number,
  bulk: number,
  field: number,
  depth = 4,
  /** Read rate limit [bytes/s], 0 = none. */
  bytesPerSec = 0,
  /** Where the scan starts (a resumed full replication). */
  from = 0,
): AsyncIterable<FileBulk> {
  const started = Date.now();
  const zeros = Buffer.alloc(bulk);
  // Buffers come back once gRPC has copied them: a few MiB reused instead of a fresh one per bulk.
  const free: Buffer[] = [];
  const start = (offset: number) => {
    const length = Math.min(bulk, size - offset);
    const backing = free.pop() ?? Buffer.allocUnsafe(BULK_HEAD_MAX + bulk);
    const m = bulkMessage(field, offset, length, backing, () => free.push(backing));
    return fh.read(m.data, 0, length, offset).then(({ bytesRead }): FileBulk => {
      if (bytesRead !== length)
        throw new WalbError('IO_ERROR', `short read at ${offset}: ${bytesRead} of ${length} bytes`);
      if (!m.data.equals(zeros.subarray(0, length))) return { offset, length, message: m.message };
      free.push(backing);
      return { offset, length };
    });
  };
  const inFlight: Promise<FileBulk>[] = [];
  let next = from;
  try {
    while (next < size || inFlight.length > 0) {
      while (next < size && inFlight.length < depth) {
        // The rate limit holds the next read back until the scan is under the limit again.
        const early = bytesPerSec > 0 ? ((next - from) / bytesPerSec) * 1000 - (Date.now() - started) : 0;
        if (early > 0) {
          if (inFlight.length > 0) break;
          await new Promise((r) => setTimeout(r, early));
          continue;
        }
        inFlight.push(start(next));
        next += Math.min(bulk, size - next);
      }
      yield await inFlight.shift()!;
    }
  } finally {
    // An early stop must not leave reads running on a handle the caller is about to close.
    await Promise.allSettled(inFlight);
  }
}
