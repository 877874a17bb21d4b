// One client connection: fixed-newstyle handshake, then the transmission phase with pipelined requests.
//
// Input is parsed from a byte queue by a small state machine (`pump`). Requests are handed to the backend as soon as
// they are parsed and validated; each reply is written when its backend call settles, so replies leave in completion
// order. Memory is bounded by pausing the socket while too much is in flight (see `overLimit`).
import type net from 'node:net';
import { ByteQueue } from './byte-queue';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  nbdErrnoName,
  nbdErrnoOf,
  type NbdErrno,
} from './errors';
import type { NbdLogger, NbdLogLevel } from './log';
import * as P from './protocol';
import type { NbdExport, NbdExportRegistry } from './types';

export interface ConnectionLimits {
  minBlockSize: number;
  preferredBlockSize: number;
  maxPayload: number;
  maxInflightBytes: number;
  maxInflightRequests: number;
  handshakeTimeoutMs: number;
  maxOptionLength: number;
}

export interface NbdConnectionInfo {
  id: number;
  /** 'handshake' until an export is selected, then 'transmission'; 'closing' once it winds down. */
  phase: 'handshake' | 'transmission' | 'closing';
  export?: string;
  remote?: string;
  /** Requests handed to the backend and not yet settled. */
  inflightRequests: number;
  /** READ lengths and WRITE payload bytes handed to the backend and not yet settled. */
  inflightBytes: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
}

type State =
  | 'flags'
  | 'option-header'
  | 'option-data'
  | 'option-skip'
  | 'request-header'
  | 'write-payload'
  | 'write-discard'
  | 'handover'
  | 'draining'
  | 'closed';

interface PendingWrite {
  handle: Buffer;
  offset: number;
  length: number;
  fua: boolean;
}

/** How many rejected requests and backend errors a connection logs one by one (the rest are only counted). */
const MAX_LOGGED_PER_CONNECTION = 10;
/** After we end our side, a peer that keeps its side open this long is cut. */
const END_GRACE_MS = 5000;
/** Largest amount of option replies we queue for a client that does not read them. */
const HANDSHAKE_MAX_QUEUED = 1 << 20;

const ZEROES_124 = Buffer.alloc(124);
const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeString(b: Buffer): string | undefined {
  if (b.length > P.MAX_STRING_BYTES) return undefined;
  try {
    return utf8.decode(b);
  } catch {
    return undefined;
  }
}

export function transmissionFlags(e: NbdExport): number {
  let f = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA;
  if (e.readOnly) f |= P.NBD_FLAG_READ_ONLY;
  else f |= P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES;
  if (e.multiConn !== false) f |= P.NBD_FLAG_CAN_MULTI_CONN;
  return f;
}

export class NbdConnection {
  private readonly queue = new ByteQueue();
  private state: State = 'flags';
  private exp: NbdExport | undefined;
  private noZeroes = false;
  private fixedNewstyle = false;

  // option being read
  private optCode = 0;
  private optLength = 0;
  private skipLeft = 0;
  private skipReply: (() => void) | undefined;

  // write being read or discarded
  private pendingWrite: PendingWrite | undefined;

  // flow control
  private inflightOps = 0;
  private inflightBytes = 0;
  private queuedWrites = 0;
  private paused = false;
  private pumping = false;

  // winding down
  private handedOver = false;
  private draining = false;
  private drainReason = '';
  private ended = false;
  private closeReason: string | undefined;
  private readonly closeWaiters: (() => void)[] = [];
  private handshakeTimer: NodeJS.Timeout | undefined;
  private endTimer: NodeJS.Timeout | undefined;

  // statistics
  private readonly openedAt = Date.now();
  private requests = 0;
  private bytesRead = 0;
  private bytesWritten = 0;
  private rejected = 0;
  private backendErrors = 0;
  private logged = 0;

  constructor(
    readonly id: number,
    private readonly socket: net.Socket,
    private readonly registry: NbdExportRegistry,
    private readonly limits: ConnectionLimits,
    private readonly logger: NbdLogger,
    private readonly onClosed: (c: NbdConnection) => void,
  ) {}

  /** Sends the greeting and starts reading. */
  start(): void {
    const s = this.socket;
    s.on('data', (chunk: Buffer) => {
      if (this.state === 'draining' || this.state === 'closed') return;
      this.queue.push(chunk);
      this.pump();
    });
    s.on('end', () => this.onEof());
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.closeReason) this.closeReason = `socket error: ${err.code ?? err.message}`;
    });
    s.on('close', () => this.onSocketClose());
    if (this.limits.handshakeTimeoutMs > 0) {
      this.handshakeTimer = setTimeout(() => {
        this.protocolError('handshake not completed in time', { timeoutMs: this.limits.handshakeTimeoutMs });
      }, this.limits.handshakeTimeoutMs);
      this.handshakeTimer.unref();
    }
    const g = Buffer.alloc(P.GREETING_SIZE);
    g.writeBigUInt64BE(P.NBD_INIT_MAGIC, 0);
    g.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 8);
    g.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
    this.write(g);
  }

  info(): NbdConnectionInfo {
    return {
      id: this.id,
      phase: this.draining || this.state === 'closed' ? 'closing' : this.exp ? 'transmission' : 'handshake',
      export: this.exp?.name,
      remote: this.remote(),
      inflightRequests: this.inflightOps,
      inflightBytes: this.inflightBytes,
      requests: this.requests,
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
    };
  }

  get exportName(): string | undefined {
    return this.exp?.name;
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /**
   * Graceful end: in the handshake the connection is closed at once; in transmission no further request is read,
   * the requests already handed to the backend finish and their replies are sent, then the connection is closed.
   */
  shutdown(reason: string): Promise<void> {
    if (this.state !== 'closed') {
      if (!this.exp) this.terminate(reason, false);
      else this.startDrain(reason);
    }
    return this.whenClosed();
  }

  /** Hard close now; replies still pending are lost. */
  destroy(reason: string): void {
    this.terminate(reason, true);
  }

  whenClosed(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  // ---- input state machine ----

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.step()) {
        /* keep going while progress is made */
      }
    } catch (err) {
      // A bug here must cost this connection, never the process.
      this.log('error', 'internal-error', { msg: err instanceof Error ? err.message : String(err) });
      this.terminate('internal error', true);
    } finally {
      this.pumping = false;
    }
    this.updateFlow();
  }

  /** Does one unit of work; false when it needs more input, is blocked, or the connection is winding down. */
  private step(): boolean {
    switch (this.state) {
      case 'flags':
        if (this.queue.length < P.CLIENT_FLAGS_SIZE) return false;
        return this.onClientFlags(this.queue.take(P.CLIENT_FLAGS_SIZE).readUInt32BE(0));
      case 'option-header': {
        if (this.queue.length < P.OPTION_HEADER_SIZE) return false;
        if (this.socket.writableLength > HANDSHAKE_MAX_QUEUED) return false; // resumed by the write callback
        const h = this.queue.take(P.OPTION_HEADER_SIZE);
        return this.onOptionHeader(h.readBigUInt64BE(0), h.readUInt32BE(8), h.readUInt32BE(12));
      }
      case 'option-data':
        if (this.queue.length < this.optLength) return false;
        return this.onOption(this.optCode, this.queue.take(this.optLength));
      case 'option-skip':
        this.skipLeft -= this.queue.skip(this.skipLeft);
        if (this.skipLeft > 0) return false;
        this.state = 'option-header';
        this.skipReply?.();
        this.skipReply = undefined;
        return true;
      case 'request-header':
        if (this.queue.length < P.REQUEST_HEADER_SIZE) return false;
        if (this.overLimit()) return false;
        return this.onRequest(this.queue.take(P.REQUEST_HEADER_SIZE));
      case 'write-payload': {
        const w = this.pendingWrite!;
        if (this.queue.length < w.length) return false;
        const data = this.queue.take(w.length, true);
        this.pendingWrite = undefined;
        this.state = 'request-header';
        this.bytesWritten += w.length;
        this.dispatch(P.NBD_CMD_WRITE, w.handle, w.length, () => this.exp!.write(w.offset, data, w.fua));
        return true;
      }
      case 'write-discard': {
        this.skipLeft -= this.queue.skip(this.skipLeft);
        if (this.skipLeft > 0) return false;
        this.state = 'request-header';
        this.skipReply?.();
        this.skipReply = undefined;
        return true;
      }
      case 'handover':
        return false; // the bytes stay queued for the device's own transmission loop
      case 'draining':
      case 'closed':
        this.queue.clear();
        return false;
    }
  }

  /** Pause reading while over the in-flight limits; resume when back under them. */
  private updateFlow(): void {
    if (this.ended) {
      // our side is finished: keep reading (and dropping) so that the peer's close is noticed
      if (this.paused) {
        this.paused = false;
        this.socket.resume();
      }
      return;
    }
    const wantPause =
      this.state === 'draining' ||
      this.state === 'closed' ||
      (this.state === 'request-header' && this.queue.length >= P.REQUEST_HEADER_SIZE && this.overLimit()) ||
      (this.state === 'option-header' && this.socket.writableLength > HANDSHAKE_MAX_QUEUED);
    if (wantPause && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!wantPause && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private overLimit(): boolean {
    return (
      this.inflightBytes + this.socket.writableLength > this.limits.maxInflightBytes ||
      this.inflightOps + this.queuedWrites >= this.limits.maxInflightRequests
    );
  }

  // ---- handshake ----

  private onClientFlags(flags: number): boolean {
    const known = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES;
    if ((flags & ~known) !== 0) {
      this.protocolError('unknown client flags', { flags });
      return false;
    }
    this.fixedNewstyle = (flags & P.NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
    this.noZeroes = (flags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
    this.state = 'option-header';
    return true;
  }

  private onOptionHeader(magic: bigint, option: number, length: number): boolean {
    if (magic !== P.NBD_OPTS_MAGIC) {
      this.protocolError('bad option magic', { magic: `0x${magic.toString(16)}` });
      return false;
    }
    if (length > this.limits.maxOptionLength) {
      if (option === P.NBD_OPT_EXPORT_NAME) {
        this.protocolError('export name too long', { length });
        return false;
      }
      this.state = 'option-skip';
      this.skipLeft = length;
      this.skipReply = () => this.optionReply(option, P.NBD_REP_ERR_TOO_BIG, 'option data too large');
      return true;
    }
    this.optCode = option;
    this.optLength = length;
    this.state = 'option-data';
    return true;
  }

  private onOption(option: number, data: Buffer): boolean {
    this.state = 'option-header';
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME:
        return this.optExportName(data);
      case P.NBD_OPT_ABORT:
        this.optionReply(option, P.NBD_REP_ACK);
        this.terminate('client aborted the handshake', false);
        return false;
      case P.NBD_OPT_LIST:
        this.optList(data);
        return true;
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.optInfoGo(option, data);
      default:
        // STARTTLS, STRUCTURED_REPLY, the meta-context options, extended headers and anything unknown.
        this.optionReply(option, P.NBD_REP_ERR_UNSUP, `option ${P.optionName(option)} is not supported`);
        return true;
    }
  }

  private optExportName(data: Buffer): boolean {
    const name = decodeString(data);
    const exp = name === undefined ? undefined : this.lookup(name);
    if (!exp) {
      // NBD_OPT_EXPORT_NAME cannot carry an error: the protocol asks for a hard disconnect.
      this.protocolError('unknown export (NBD_OPT_EXPORT_NAME)', { export: name ?? '<invalid UTF-8>' });
      return false;
    }
    const reply = Buffer.alloc(10);
    reply.writeBigUInt64BE(BigInt(exp.size), 0);
    reply.writeUInt16BE(transmissionFlags(exp), 8);
    this.write(reply);
    if (!this.noZeroes) this.write(ZEROES_124);
    this.enterTransmission(exp, 'EXPORT_NAME');
    return true;
  }

  private optList(data: Buffer): void {
    if (data.length !== 0) {
      this.optionReply(P.NBD_OPT_LIST, P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
      return;
    }
    for (const e of this.registry.list()) {
      const name = Buffer.from(e.name, 'utf8');
      const desc = Buffer.from(e.description ?? '', 'utf8').subarray(0, P.MAX_STRING_BYTES);
      const body = Buffer.alloc(4 + name.length + desc.length);
      body.writeUInt32BE(name.length, 0);
      name.copy(body, 4);
      desc.copy(body, 4 + name.length);
      this.optionReply(P.NBD_OPT_LIST, P.NBD_REP_SERVER, body);
    }
    this.optionReply(P.NBD_OPT_LIST, P.NBD_REP_ACK);
  }

  private optInfoGo(option: number, data: Buffer): boolean {
    if (data.length < 6) {
      this.optionReply(option, P.NBD_REP_ERR_INVALID, 'option data too short');
      return true;
    }
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 6) {
      this.optionReply(option, P.NBD_REP_ERR_INVALID, 'export name length exceeds the option data');
      return true;
    }
    const count = data.readUInt16BE(4 + nameLen);
    if (data.length !== 4 + nameLen + 2 + 2 * count) {
      this.optionReply(
        option,
        P.NBD_REP_ERR_INVALID,
        'information request list does not match the option length',
      );
      return true;
    }
    const name = decodeString(data.subarray(4, 4 + nameLen));
    if (name === undefined) {
      this.optionReply(option, P.NBD_REP_ERR_INVALID, 'export name is not valid UTF-8 of at most 4096 bytes');
      return true;
    }
    const wanted = new Set<number>();
    for (let i = 0; i < count; i++) wanted.add(data.readUInt16BE(4 + nameLen + 2 + 2 * i));
    const exp = this.lookup(name);
    if (!exp) {
      this.optionReply(
        option,
        P.NBD_REP_ERR_UNKNOWN,
        name === '' ? 'no default export' : `unknown export: ${name}`,
      );
      return true;
    }
    const flags = transmissionFlags(exp);
    const info = Buffer.alloc(12);
    info.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
    info.writeBigUInt64BE(BigInt(exp.size), 2);
    info.writeUInt16BE(flags, 10);
    this.optionReply(option, P.NBD_REP_INFO, info);
    if (wanted.has(P.NBD_INFO_NAME)) {
      this.optionReply(option, P.NBD_REP_INFO, infoString(P.NBD_INFO_NAME, exp.name));
    }
    if (wanted.has(P.NBD_INFO_DESCRIPTION) && exp.description) {
      this.optionReply(option, P.NBD_REP_INFO, infoString(P.NBD_INFO_DESCRIPTION, exp.description));
    }
    // Sent whether asked or not (the protocol allows unrequested information); requests that break the
    // constraints are answered with EINVAL anyway.
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
    bs.writeUInt32BE(this.limits.minBlockSize, 2);
    bs.writeUInt32BE(this.limits.preferredBlockSize, 6);
    bs.writeUInt32BE(this.limits.maxPayload, 10);
    this.optionReply(option, P.NBD_REP_INFO, bs);
    this.optionReply(option, P.NBD_REP_ACK);
    if (option === P.NBD_OPT_GO) this.enterTransmission(exp, 'GO');
    return true;
  }

  private lookup(name: string): NbdExport | undefined {
    let n: string | undefined = name;
    if (n === '') n = this.registry.defaultName?.();
    return n === undefined ? undefined : this.registry.get(n);
  }

  private optionReply(option: number, type: number, data?: Buffer | string): void {
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const h = Buffer.alloc(P.OPTION_REPLY_HEADER_SIZE);
    h.writeBigUInt64BE(P.NBD_REP_MAGIC, 0);
    h.writeUInt32BE(option >>> 0, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(body?.length ?? 0, 16);
    this.write(body && body.length > 0 ? Buffer.concat([h, body]) : h);
  }

  private enterTransmission(exp: NbdExport, via: string): void {
    this.exp = exp;
    this.state = 'request-header';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.log('info', 'connection-export', {
      export: exp.name,
      via,
      size: exp.size,
      readOnly: exp.readOnly === true,
      fixedNewstyle: this.fixedNewstyle,
    });
    if (exp.adoptTransmission) this.beginHandover(exp);
  }

  /** Hands the transmission phase to the export (after the handshake replies have left the socket). */
  private beginHandover(exp: NbdExport): void {
    this.state = 'handover';
    this.paused = true;
    this.socket.pause();
    const go = () => {
      const handle = (this.socket as unknown as { _handle?: { fd?: number } })._handle;
      const fd = handle?.fd;
      if (this.state !== 'handover' || typeof fd !== 'number' || fd < 0) return this.keepTransmission();
      const pending = this.queue.take(this.queue.length);
      const limits = {
        minBlockSize: this.limits.minBlockSize,
        maxPayload: this.limits.maxPayload,
        maxInflightBytes: this.limits.maxInflightBytes,
        maxInflightRequests: this.limits.maxInflightRequests,
      };
      const since = Date.now();
      try {
        exp.adoptTransmission!(fd, pending, limits, (stats) =>
          this.log('info', 'connection-close', { ...stats, native: true, durationMs: Date.now() - since }),
        );
      } catch (err) {
        this.log('warn', 'handover-failed', { msg: err instanceof Error ? err.message : String(err) });
        this.queue.push(pending);
        return this.keepTransmission();
      }
      this.handedOver = true;
      this.closeReason = 'transmission handed to the device';
      this.socket.destroy();
    };
    if (this.socket.writableLength === 0) go();
    else this.socket.once('drain', go);
  }

  private keepTransmission(): void {
    if (this.state !== 'handover') return;
    this.state = 'request-header';
    this.paused = false;
    this.socket.resume();
    this.pump();
  }

  // ---- transmission ----

  private onRequest(h: Buffer): boolean {
    const magic = h.readUInt32BE(0);
    if (magic !== P.NBD_REQUEST_MAGIC) {
      this.protocolError('bad request magic', { magic: `0x${magic.toString(16)}` });
      return false;
    }
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const handle = Buffer.from(h.subarray(8, 16));
    const offHi = h.readUInt32BE(16);
    const offLo = h.readUInt32BE(20);
    const length = h.readUInt32BE(24);
    // Offsets beyond 2^53 cannot be valid for any export; keep them recognisably out of range.
    const offset = offHi >= 0x200000 ? Number.MAX_SAFE_INTEGER : offHi * 0x100000000 + offLo;
    this.requests++;

    if (type === P.NBD_CMD_DISC) {
      this.startDrain('client disconnected (NBD_CMD_DISC)');
      return false;
    }
    if (type === P.NBD_CMD_WRITE && length > this.limits.maxPayload) {
      // The payload follows the header whatever we answer; rather than stream that much to nowhere, cut the client
      // (proto.md lets a server hard-disconnect on payloads it deems a denial of service; the maximum was advertised).
      this.protocolError('write payload larger than the maximum block size', {
        length,
        max: this.limits.maxPayload,
      });
      return false;
    }
    const errno = this.validate(type, flags, offset, length);
    const fua = (flags & P.NBD_CMD_FLAG_FUA) !== 0;
    if (type === P.NBD_CMD_WRITE) {
      if (errno !== 0) {
        this.reject(type, errno, offset, length);
        this.state = 'write-discard';
        this.skipLeft = length;
        this.skipReply = () => this.sendReply(handle, errno);
        return true;
      }
      if (length === 0) {
        this.sendReply(handle, 0);
        return true;
      }
      this.state = 'write-payload';
      this.pendingWrite = { handle, offset, length, fua };
      return true;
    }
    if (errno !== 0) {
      this.reject(type, errno, offset, length);
      this.sendReply(handle, errno);
      return true;
    }
    const exp = this.exp!;
    switch (type) {
      case P.NBD_CMD_READ:
        if (length === 0) this.sendReply(handle, 0);
        else {
          this.bytesRead += length;
          this.dispatch(type, handle, length, () => exp.read(offset, length));
        }
        return true;
      case P.NBD_CMD_FLUSH:
        this.dispatch(type, handle, 0, () => exp.flush());
        return true;
      case P.NBD_CMD_TRIM:
        if (length === 0) this.sendReply(handle, 0);
        else this.dispatch(type, handle, 0, () => exp.trim(offset, length, fua));
        return true;
      case P.NBD_CMD_WRITE_ZEROES:
        if (length === 0) this.sendReply(handle, 0);
        else this.dispatch(type, handle, 0, () => exp.writeZeroes(offset, length, fua));
        return true;
      default:
        // validate() refused every other command already
        this.sendReply(handle, NBD_EINVAL);
        return true;
    }
  }

  /** The NBD error for a request, or 0 if it is valid (proto.md, "Error values" and "Block size constraints"). */
  private validate(type: number, flags: number, offset: number, length: number): number {
    const exp = this.exp!;
    let allowedFlags = P.NBD_CMD_FLAG_FUA;
    let writes = false;
    switch (type) {
      case P.NBD_CMD_READ:
        if (length > this.limits.maxPayload) return NBD_EINVAL;
        break;
      case P.NBD_CMD_WRITE:
      case P.NBD_CMD_TRIM:
        writes = true;
        break;
      case P.NBD_CMD_WRITE_ZEROES:
        writes = true;
        allowedFlags |= P.NBD_CMD_FLAG_NO_HOLE;
        break;
      case P.NBD_CMD_FLUSH:
        // offset and length are reserved (zero); tolerate clients that fill them
        return (flags & ~allowedFlags) !== 0 ? NBD_EINVAL : 0;
      default:
        return NBD_EINVAL; // CACHE, BLOCK_STATUS and unknown commands: not advertised
    }
    if ((flags & ~allowedFlags) !== 0) return NBD_EINVAL;
    if (writes && exp.readOnly) return NBD_EPERM;
    const bs = this.limits.minBlockSize;
    if (offset % bs !== 0 || length % bs !== 0) return NBD_EINVAL;
    const size = exp.size;
    if (length > size || offset > size - length) {
      // the protocol asks for ENOSPC on writes past the end and EINVAL on reads and trims past it
      return type === P.NBD_CMD_WRITE || type === P.NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    }
    return 0;
  }

  private reject(type: number, errno: number, offset: number, length: number): void {
    this.rejected++;
    if (this.logged < MAX_LOGGED_PER_CONNECTION) {
      this.logged++;
      this.log('warn', 'request-rejected', {
        command: P.commandName(type),
        error: nbdErrnoName(errno),
        offset,
        length,
      });
    }
  }

  private dispatch(type: number, handle: Buffer, cost: number, run: () => Promise<unknown>): void {
    this.inflightOps++;
    this.inflightBytes += cost;
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(run());
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (result) => this.settle(type, handle, cost, result, undefined),
      (err: unknown) => this.settle(type, handle, cost, undefined, err ?? new Error('rejected')),
    );
  }

  private settle(type: number, handle: Buffer, length: number, result: unknown, err: unknown): void {
    this.inflightOps--;
    this.inflightBytes -= length;
    if (err === undefined && type === P.NBD_CMD_READ) {
      if (!(result instanceof Uint8Array) || result.length !== length) {
        err = new Error(
          `backend read returned ${result instanceof Uint8Array ? `${result.length} bytes` : typeof result} ` +
            `for a ${length}-byte read`,
        );
      }
    }
    if (err !== undefined) {
      const errno: NbdErrno = nbdErrnoOf(err);
      this.backendErrors++;
      if (this.logged < MAX_LOGGED_PER_CONNECTION) {
        this.logged++;
        this.log(errno === NBD_EIO ? 'error' : 'warn', 'backend-error', {
          command: P.commandName(type),
          error: nbdErrnoName(errno),
          msg: err instanceof Error ? err.message : String(err),
        });
      }
      this.sendReply(handle, errno);
    } else {
      this.sendReply(handle, 0, type === P.NBD_CMD_READ ? (result as Uint8Array) : undefined);
    }
    this.afterProgress();
  }

  private sendReply(handle: Buffer, errno: number, data?: Uint8Array): void {
    const h = Buffer.allocUnsafe(P.SIMPLE_REPLY_HEADER_SIZE);
    h.writeUInt32BE(P.NBD_SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(errno, 4);
    handle.copy(h, 8);
    if (data && data.length > 0) {
      this.socket.cork();
      this.write(h);
      this.write(data);
      this.socket.uncork();
    } else {
      this.write(h);
    }
  }

  private write(buf: Uint8Array): void {
    const s = this.socket;
    if (this.ended || s.destroyed || !s.writable) return;
    this.queuedWrites++;
    s.write(buf, () => {
      this.queuedWrites--;
      this.afterProgress();
    });
  }

  /** Something in flight finished: maybe resume reading, maybe finish a drain. */
  private afterProgress(): void {
    if (this.state === 'closed') return;
    if (this.draining) {
      this.maybeFinishDrain();
      return;
    }
    if (this.paused || this.queue.length > 0) this.pump();
  }

  // ---- winding down ----

  private onEof(): void {
    if (this.state === 'closed') return;
    const midMessage =
      this.queue.length > 0 || this.state === 'write-payload' || this.state === 'write-discard';
    if (midMessage && this.exp) {
      this.log('warn', 'protocol-error', { msg: 'connection ended in the middle of a request' });
    }
    if (!this.exp) {
      this.terminate(this.closeReason ?? 'client closed the connection during the handshake', false);
      return;
    }
    this.startDrain('client closed the connection');
  }

  /** Stop reading; end once every request handed to the backend has been answered. */
  private startDrain(reason: string): void {
    if (this.draining || this.state === 'closed') return;
    this.draining = true;
    this.drainReason = reason;
    this.state = 'draining';
    this.queue.clear();
    this.pendingWrite = undefined;
    this.updateFlow();
    this.maybeFinishDrain();
  }

  private maybeFinishDrain(): void {
    if (this.inflightOps > 0 || this.queuedWrites > 0) return;
    this.terminate(this.drainReason, false);
  }

  /** Ends (graceful: flush what is queued, then FIN) or destroys the socket. */
  private terminate(reason: string, hard: boolean): void {
    if (this.state === 'closed') return;
    if (!this.closeReason) this.closeReason = reason;
    this.state = 'draining';
    this.draining = true;
    this.queue.clear();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    if (hard) {
      this.socket.destroy();
      return;
    }
    if (!this.ended) {
      this.ended = true;
      this.socket.end();
      this.updateFlow(); // read (and drop) until the peer closes its side
      this.endTimer = setTimeout(() => this.socket.destroy(), END_GRACE_MS);
      this.endTimer.unref();
    }
  }

  private protocolError(msg: string, fields: Record<string, unknown> = {}): void {
    this.log('warn', 'protocol-error', { msg, ...fields });
    this.terminate(`protocol error: ${msg}`, true);
  }

  private onSocketClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.queue.clear();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.endTimer) clearTimeout(this.endTimer);
    if (this.handedOver) {
      this.log('info', 'connection-handover', { durationMs: Date.now() - this.openedAt });
      this.onClosed(this);
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    this.log('info', 'connection-close', {
      reason: this.closeReason ?? 'connection lost',
      requests: this.requests,
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
      rejected: this.rejected,
      backendErrors: this.backendErrors,
      inflightLost: this.inflightOps,
      durationMs: Date.now() - this.openedAt,
    });
    this.onClosed(this);
    for (const w of this.closeWaiters.splice(0)) w();
  }

  private remote(): string | undefined {
    const a = this.socket.remoteAddress;
    return a ? `${a}:${this.socket.remotePort}` : undefined;
  }

  log(level: NbdLogLevel, event: string, fields: Record<string, unknown> = {}): void {
    try {
      this.logger({ level, event, conn: this.id, ...(this.exp ? { export: this.exp.name } : {}), ...fields });
    } catch {
      /* a failing logger must not take the connection down */
    }
  }
}

function infoString(type: number, s: string): Buffer {
  const b = Buffer.from(s, 'utf8').subarray(0, P.MAX_STRING_BYTES);
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(type, 0);
  b.copy(out, 2);
  return out;
}
