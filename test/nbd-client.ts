// A raw NBD client for tests: speaks the protocol byte by byte so tests can pipeline, misbehave and inspect.
import net from 'node:net';
import { ByteQueue } from '../src/nbd/byte-queue';
import * as handshake from '../src/nbd/protocol';

/**
 * The NBD constants a test client needs: the server's handshake ones, and those of the transmission phase (whose
 * server side is C++, native/src/core/nbd_request.hpp).
 */
export const P = {
  ...handshake,
  NBD_REQUEST_MAGIC: 0x25609513,
  NBD_SIMPLE_REPLY_MAGIC: 0x67446698,
  REQUEST_HEADER_SIZE: 28, // magic, flags, type, cookie, offset, length
  SIMPLE_REPLY_HEADER_SIZE: 16, // magic, error, cookie
  NBD_CMD_READ: 0,
  NBD_CMD_WRITE: 1,
  NBD_CMD_DISC: 2,
  NBD_CMD_FLUSH: 3,
  NBD_CMD_TRIM: 4,
  NBD_CMD_CACHE: 5,
  NBD_CMD_WRITE_ZEROES: 6,
  NBD_CMD_BLOCK_STATUS: 7,
  NBD_CMD_FLAG_FUA: 1 << 0,
  NBD_CMD_FLAG_NO_HOLE: 1 << 1,
  NBD_CMD_FLAG_DF: 1 << 2,
  // Error values of replies (equal to Linux errno numbers).
  NBD_EPERM: 1,
  NBD_EIO: 5,
  NBD_EINVAL: 22,
  NBD_ENOSPC: 28,
  NBD_EOVERFLOW: 75,
  NBD_ESHUTDOWN: 108,
} as const;

export class RawClient {
  private readonly q = new ByteQueue();
  private closed = false;
  private wake: (() => void) | undefined;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.q.push(d);
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => {});
  }

  static connect(sockPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path: sockPath });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects, reads the greeting, sends the client flags. */
  static async handshake(
    sockPath: string,
    flags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES,
  ): Promise<RawClient> {
    const c = await RawClient.connect(sockPath);
    const g = await c.read(P.GREETING_SIZE);
    if (g.readBigUInt64BE(0) !== P.NBD_INIT_MAGIC || g.readBigUInt64BE(8) !== P.NBD_OPTS_MAGIC) {
      throw new Error('bad greeting');
    }
    const f = Buffer.alloc(4);
    f.writeUInt32BE(flags);
    c.write(f);
    return c;
  }

  /** Handshake + NBD_OPT_GO; resolves with the INFO_EXPORT fields. */
  static async go(sockPath: string, name: string): Promise<{ c: RawClient; size: number; flags: number }> {
    const c = await RawClient.handshake(sockPath);
    c.option(P.NBD_OPT_GO, goData(name, [P.NBD_INFO_BLOCK_SIZE]));
    let size = -1;
    let flags = -1;
    for (;;) {
      const r = await c.optReply();
      if (r.type === P.NBD_REP_ACK) break;
      if (r.type !== P.NBD_REP_INFO) throw new Error(`GO failed: reply type 0x${r.type.toString(16)}`);
      if (r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      }
    }
    return { c, size, flags };
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.q.length < n) {
      if (this.closed) throw new Error(`connection closed with ${this.q.length} of ${n} bytes`);
      await this.waitData(deadline);
    }
    return this.q.take(n);
  }

  /** Resolves once the server has closed the connection (leftover bytes are dropped). */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) await this.waitData(deadline);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private waitData(deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.wake = undefined;
          reject(new Error('timed out waiting for the server'));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }

  option(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(P.OPTION_HEADER_SIZE);
    h.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(P.OPTION_REPLY_HEADER_SIZE);
    if (h.readBigUInt64BE(0) !== P.NBD_REP_MAGIC) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len) };
  }

  request(
    type: number,
    handle: number,
    offset: number | bigint,
    length: number,
    flags = 0,
    payload?: Buffer,
  ): void {
    const h = Buffer.alloc(P.REQUEST_HEADER_SIZE);
    h.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(BigInt(handle), 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  /** Reads one simple reply; `dataLength(handle)` says how many payload bytes follow a successful reply. */
  async reply(
    dataLength: (handle: number) => number = () => 0,
  ): Promise<{ handle: number; error: number; data: Buffer }> {
    const h = await this.read(P.SIMPLE_REPLY_HEADER_SIZE);
    if (h.readUInt32BE(0) !== P.NBD_SIMPLE_REPLY_MAGIC) throw new Error('bad reply magic');
    const error = h.readUInt32BE(4);
    const handle = Number(h.readBigUInt64BE(8));
    const data = error === 0 ? await this.read(dataLength(handle)) : Buffer.alloc(0);
    return { handle, error, data };
  }

  async readAt(
    handle: number,
    offset: number | bigint,
    length: number,
  ): Promise<{ error: number; data: Buffer }> {
    this.request(P.NBD_CMD_READ, handle, offset, length);
    const r = await this.reply(() => length);
    if (r.handle !== handle) throw new Error(`reply for handle ${r.handle}, expected ${handle}`);
    return r;
  }

  async writeAt(handle: number, offset: number, data: Buffer, flags = 0): Promise<number> {
    this.request(P.NBD_CMD_WRITE, handle, offset, data.length, flags, data);
    const r = await this.reply();
    if (r.handle !== handle) throw new Error(`reply for handle ${r.handle}, expected ${handle}`);
    return r.error;
  }

  async simple(
    type: number,
    handle: number,
    offset: number | bigint,
    length: number,
    flags = 0,
  ): Promise<number> {
    this.request(type, handle, offset, length, flags);
    const r = await this.reply();
    if (r.handle !== handle) throw new Error(`reply for handle ${r.handle}, expected ${handle}`);
    return r.error;
  }

  disconnect(): void {
    this.request(P.NBD_CMD_DISC, 0, 0, 0);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

export function goData(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((inf, i) => b.writeUInt16BE(inf, 4 + n.length + 2 + 2 * i));
  return b;
}
