// The fixed-newstyle handshake of one client connection (docs/nbd-server.md, "Handshake"). Once the client has
// selected an export and the replies have left the socket, the socket's descriptor and the request bytes already
// read go to the export's `serve` (the transmission phase runs in C++), and the socket object here is closed.
//
// Input is parsed from a byte queue by a small state machine (`pump`); option replies are written in order.
import type net from 'node:net';
import { ByteQueue } from './byte-queue';
import type { NbdLogLevel } from './log';
import * as P from './protocol';
import type {
  NbdExport,
  NbdExportRegistry,
  NbdTransmission,
  TransmissionLimits,
  TransmissionStats,
} from './types';

export interface HandshakeLimits extends TransmissionLimits {
  preferredBlockSize: number;
  handshakeTimeoutMs: number;
  maxOptionLength: number;
}

export interface HandshakeEvents {
  log(level: NbdLogLevel, event: string, fields?: Record<string, unknown>): void;
  /** The export took the connection over; `onClose` of its `serve` goes to `transmissionClosed`. */
  handedOver(exp: NbdExport, transmission: NbdTransmission): void;
  transmissionClosed(stats: TransmissionStats): void;
  /** The socket closed during the handshake (not after a hand-over). */
  closed(reason: string): void;
}

type State = 'flags' | 'option-header' | 'option-data' | 'option-skip' | 'handover' | 'closing' | 'closed';

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

export class NbdHandshake {
  private readonly queue = new ByteQueue();
  private state: State = 'flags';
  private noZeroes = false;
  private fixedNewstyle = false;
  private selected: NbdExport | undefined;

  // option being read or skipped
  private optCode = 0;
  private optLength = 0;
  private skipLeft = 0;
  private skipReply: (() => void) | undefined;

  private paused = false;
  private pumping = false;
  private ended = false;
  private handedOver = false;
  private closeReason: string | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private endTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly registry: NbdExportRegistry,
    private readonly limits: HandshakeLimits,
    private readonly events: HandshakeEvents,
  ) {}

  /** Sends the greeting and starts reading. */
  start(): void {
    const s = this.socket;
    s.on('data', (chunk: Buffer) => {
      if (this.state === 'closing' || this.state === 'closed') return;
      this.queue.push(chunk);
      this.pump();
    });
    s.on('end', () => {
      // once an export is selected, the transmission phase sees the end of the stream itself
      if (this.state === 'handover') return;
      this.terminate(this.closeReason ?? 'client closed the connection during the handshake', false);
    });
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

  /** The export selected (set from the moment its replies are queued). */
  get exportName(): string | undefined {
    return this.selected?.name;
  }

  /** Ends (graceful: flush what is queued, then FIN) or destroys the socket. */
  terminate(reason: string, hard: boolean): void {
    if (this.state === 'closed') return;
    if (!this.closeReason) this.closeReason = reason;
    this.state = 'closing';
    this.queue.clear();
    this.clearHandshakeTimer();
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
      this.events.log('error', 'internal-error', { msg: err instanceof Error ? err.message : String(err) });
      this.terminate('internal error', true);
    } finally {
      this.pumping = false;
    }
    this.updateFlow();
  }

  /** Does one unit of work; false when it needs more input, is blocked, or the handshake is over. */
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
      case 'handover':
        return false; // the bytes stay queued for the transmission phase
      case 'closing':
      case 'closed':
        this.queue.clear();
        return false;
    }
  }

  /** Pause reading while the client does not read its replies, or once the handshake is over. */
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
      this.state === 'handover' ||
      this.state === 'closing' ||
      this.state === 'closed' ||
      (this.state === 'option-header' && this.socket.writableLength > HANDSHAKE_MAX_QUEUED);
    if (wantPause && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!wantPause && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

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
    this.select(exp, 'EXPORT_NAME');
    return false;
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
    if (option !== P.NBD_OPT_GO) return true;
    this.select(exp, 'GO');
    return false;
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

  private write(buf: Uint8Array): void {
    const s = this.socket;
    if (this.ended || s.destroyed || !s.writable) return;
    s.write(buf, () => {
      if (this.state === 'option-header' && this.queue.length > 0) this.pump();
      else this.updateFlow();
    });
  }

  /** The client selected `exp`: once the replies have left the socket, hand the connection over. */
  private select(exp: NbdExport, via: string): void {
    this.selected = exp;
    this.state = 'handover';
    this.clearHandshakeTimer();
    this.events.log('info', 'connection-export', {
      export: exp.name,
      via,
      size: exp.size,
      readOnly: exp.readOnly === true,
      fixedNewstyle: this.fixedNewstyle,
    });
    this.updateFlow();
    if (this.socket.writableLength === 0) this.handOver(exp);
    else this.socket.once('drain', () => this.handOver(exp));
  }

  private handOver(exp: NbdExport): void {
    if (this.state !== 'handover') return;
    const handle = (this.socket as unknown as { _handle?: { fd?: number } })._handle;
    const fd = handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      this.events.log('error', 'handover-failed', { msg: 'the socket has no descriptor' });
      this.terminate('hand-over failed', true);
      return;
    }
    const pending = this.queue.take(this.queue.length);
    let transmission: NbdTransmission;
    try {
      transmission = exp.serve(fd, pending, this.limits, (stats) => this.events.transmissionClosed(stats));
    } catch (err) {
      this.events.log('error', 'handover-failed', { msg: err instanceof Error ? err.message : String(err) });
      this.terminate('hand-over failed', true);
      return;
    }
    this.handedOver = true;
    this.state = 'closed';
    this.socket.destroy();
    this.events.handedOver(exp, transmission);
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
  }

  private protocolError(msg: string, fields: Record<string, unknown> = {}): void {
    this.events.log('warn', 'protocol-error', { msg, ...fields });
    this.terminate(`protocol error: ${msg}`, true);
  }

  private onSocketClose(): void {
    this.clearHandshakeTimer();
    if (this.endTimer) clearTimeout(this.endTimer);
    this.queue.clear();
    if (this.handedOver) return;
    this.state = 'closed';
    this.events.closed(this.closeReason ?? 'connection lost');
  }
}

function infoString(type: number, s: string): Buffer {
  const b = Buffer.from(s, 'utf8').subarray(0, P.MAX_STRING_BYTES);
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(type, 0);
  b.copy(out, 2);
  return out;
}
