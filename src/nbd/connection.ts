// One client connection: the handshake in JS (handshake.ts), then the transmission phase in C++ behind the
// export's `serve`. This class only follows the phases, reports them and logs how the connection ended.
import type net from 'node:net';
import { NbdHandshake, type HandshakeLimits } from './handshake';
import type { NbdLogger, NbdLogLevel } from './log';
import type { NbdExport, NbdExportRegistry, NbdTransmission, TransmissionStats } from './types';

export interface NbdConnectionInfo {
  id: number;
  /** 'handshake' until the export has taken the connection over, then 'transmission'; 'closing' once it winds down. */
  phase: 'handshake' | 'transmission' | 'closing';
  export?: string;
  remote?: string;
  /** Requests handed to the backend and not yet answered. */
  inflightRequests: number;
  /** READ lengths and WRITE payload bytes in flight, and READ bytes not yet written to the socket. */
  inflightBytes: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
}

export class NbdConnection {
  private readonly handshake: NbdHandshake;
  private readonly openedAt = Date.now();
  private readonly remoteAddress: string | undefined;
  private exp: NbdExport | undefined;
  private transmission: NbdTransmission | undefined;
  private closing = false;
  private closed = false;
  private readonly closeWaiters: (() => void)[] = [];

  constructor(
    readonly id: number,
    socket: net.Socket,
    registry: NbdExportRegistry,
    limits: HandshakeLimits,
    private readonly logger: NbdLogger,
    private readonly onClosed: (c: NbdConnection) => void,
  ) {
    this.remoteAddress = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
    this.handshake = new NbdHandshake(socket, registry, limits, {
      log: (level, event, fields) => this.log(level, event, fields),
      handedOver: (exp, transmission) => {
        this.exp = exp;
        this.transmission = transmission;
      },
      transmissionClosed: (stats) => this.onTransmissionClosed(stats),
      closed: (reason) => {
        this.log('info', 'connection-close', { reason, durationMs: Date.now() - this.openedAt });
        this.finish();
      },
    });
  }

  start(): void {
    this.handshake.start();
  }

  get exportName(): string | undefined {
    return this.exp?.name ?? this.handshake.exportName;
  }

  info(): NbdConnectionInfo {
    const s = this.transmission?.stats();
    return {
      id: this.id,
      phase: this.closing || this.closed ? 'closing' : s ? 'transmission' : 'handshake',
      export: this.exportName,
      remote: this.remoteAddress,
      inflightRequests: s?.inflightRequests ?? 0,
      inflightBytes: s?.inflightBytes ?? 0,
      requests: s?.requests ?? 0,
      bytesRead: s?.bytesRead ?? 0,
      bytesWritten: s?.bytesWritten ?? 0,
    };
  }

  /**
   * Graceful end: in the handshake the connection is closed at once; in transmission no further request is read,
   * the requests already handed to the backend finish and their replies are sent, then the connection is closed.
   */
  shutdown(reason: string): Promise<void> {
    if (!this.closed) {
      this.closing = true;
      if (this.transmission) this.transmission.shutdown(reason);
      else this.handshake.terminate(reason, false);
    }
    return this.whenClosed();
  }

  /** Hard close now; replies still pending are lost. */
  destroy(reason: string): void {
    if (this.closed) return;
    this.closing = true;
    if (this.transmission) this.transmission.abort(reason);
    else this.handshake.terminate(reason, true);
  }

  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** The C++ side ended the connection: log what it reports, then the close itself. */
  private onTransmissionClosed(stats: TransmissionStats): void {
    for (const e of stats.events) {
      const { kind, ...fields } = e;
      this.log(kind === 'backend-error' && e.error === 'EIO' ? 'error' : 'warn', kind, fields);
    }
    if (stats.protocolError) this.log('warn', 'protocol-error', { msg: stats.reason });
    const { events: _events, ...counters } = stats;
    this.log('info', 'connection-close', { ...counters, durationMs: Date.now() - this.openedAt });
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed(this);
    for (const w of this.closeWaiters.splice(0)) w();
  }

  log(level: NbdLogLevel, event: string, fields: Record<string, unknown> = {}): void {
    try {
      const exp = this.exportName;
      this.logger({ level, event, conn: this.id, ...(exp ? { export: exp } : {}), ...fields });
    } catch {
      /* a failing logger must not take the connection down */
    }
  }
}
