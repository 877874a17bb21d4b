// NbdServer: accepts NBD clients on a unix socket (default) or a TCP address and serves the exports of a registry.
import fs from 'node:fs';
import net from 'node:net';
import { staleSocket } from '../common/socket';
import { NbdConnection, type NbdConnectionInfo } from './connection';
import type { HandshakeLimits } from './handshake';
import { jsonLinesLogger, type NbdLogger, type NbdLogLevel } from './log';
import type { NbdExportRegistry } from './types';

export type NbdListenAddress =
  /** Unix socket; `mode` (e.g. 0o660) is applied to the socket file after binding. */
  | { path: string; mode?: number }
  /**
   * TCP; host defaults to 127.0.0.1, port 0 picks a free port. NBD here has no authentication or TLS, so a host
   * other than a loopback address is refused unless `allowRemote` is set.
   */
  | { host?: string; port: number; allowRemote?: boolean };

export type NbdBoundAddress = { path: string } | { host: string; port: number };

export interface NbdServerOptions {
  registry: NbdExportRegistry;
  listen: NbdListenAddress;
  /** Default: JSON lines on stderr. */
  logger?: NbdLogger;
  /** Advertised minimum block size; requests not aligned to it get EINVAL. Power of 2, 1..65536. Default 512. */
  minBlockSize?: number;
  /** Advertised preferred block size. Power of 2 >= max(minBlockSize, 512). Default 4096. */
  preferredBlockSize?: number;
  /** Advertised maximum block size = largest READ/WRITE length accepted. Default 32 MiB. */
  maxPayload?: number;
  /**
   * Per connection: stop reading new requests while READ/WRITE bytes in flight (READ data until it is written to
   * the socket) reach this. Default 64 MiB.
   */
  maxInflightBytes?: number;
  /** Per connection: stop reading new requests while this many are in flight. Default 512. */
  maxInflightRequests?: number;
  /** A client that has not selected an export after this long is disconnected (0 = never). Default 30 s. */
  handshakeTimeoutMs?: number;
  /** Largest option data accepted in the handshake; larger options get NBD_REP_ERR_TOO_BIG. Default 64 KiB. */
  maxOptionLength?: number;
  /** Refuse connections beyond this many (net.Server maxConnections). Default unlimited. */
  maxConnections?: number;
}

const MiB = 1 << 20;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** An NBD URI for clients (libnbd, qemu): nbd+unix:///NAME?socket=PATH or nbd://HOST:PORT/NAME. */
export function nbdUri(address: NbdBoundAddress, exportName: string): string {
  const name = encodeURIComponent(exportName);
  if ('path' in address) return `nbd+unix:///${name}?socket=${encodeURIComponent(address.path)}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `nbd://${host}:${address.port}/${name}`;
}

export class NbdServer {
  private readonly registry: NbdExportRegistry;
  private readonly limits: HandshakeLimits;
  private readonly logger: NbdLogger;
  private readonly listenAddress: NbdListenAddress;
  private readonly server: net.Server;
  private readonly conns = new Set<NbdConnection>();
  private nextId = 1;
  private bound: NbdBoundAddress | undefined;
  private closing: Promise<void> | undefined;
  private listenerClosed: Promise<void> | undefined;

  constructor(options: NbdServerOptions) {
    this.registry = options.registry;
    this.listenAddress = options.listen;
    this.logger = options.logger ?? jsonLinesLogger();
    this.limits = {
      minBlockSize: options.minBlockSize ?? 512,
      preferredBlockSize: options.preferredBlockSize ?? 4096,
      maxPayload: options.maxPayload ?? 32 * MiB,
      maxInflightBytes: options.maxInflightBytes ?? 64 * MiB,
      maxInflightRequests: options.maxInflightRequests ?? 512,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
      maxOptionLength: options.maxOptionLength ?? 64 * 1024,
    };
    const l = this.limits;
    if (!isPowerOfTwo(l.minBlockSize) || l.minBlockSize > 65536) {
      throw new RangeError(`minBlockSize must be a power of 2 up to 65536, not ${l.minBlockSize}`);
    }
    if (!isPowerOfTwo(l.preferredBlockSize) || l.preferredBlockSize < Math.max(l.minBlockSize, 512)) {
      throw new RangeError(`preferredBlockSize must be a power of 2 >= max(minBlockSize, 512)`);
    }
    if (
      !Number.isInteger(l.maxPayload) ||
      l.maxPayload % l.minBlockSize !== 0 ||
      l.maxPayload < l.preferredBlockSize ||
      l.maxPayload > 0xffffffff
    ) {
      throw new RangeError(
        `maxPayload must be a multiple of minBlockSize, >= preferredBlockSize and < 4 GiB`,
      );
    }
    if (!(l.maxInflightBytes > 0) || !(l.maxInflightRequests > 0)) {
      throw new RangeError('maxInflightBytes and maxInflightRequests must be positive');
    }
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) =>
      this.onConnection(s),
    );
    if (options.maxConnections !== undefined) this.server.maxConnections = options.maxConnections;
    // errors while binding reject listen(); this listener only reports later ones (and keeps them from throwing)
    this.server.on('error', (err) => {
      if (this.bound) this.log('error', 'server-error', { msg: err.message });
    });
    const a = options.listen;
    if (!('path' in a) && !a.allowRemote && !isLoopback(a.host ?? '127.0.0.1')) {
      throw new RangeError(
        `NBD over TCP listens on loopback only (got ${a.host}); set allowRemote to override`,
      );
    }
  }

  /** Binds and starts accepting. Resolves with the bound address (the real port when port 0 was asked for). */
  async listen(): Promise<NbdBoundAddress> {
    if (this.bound) return this.bound;
    const a = this.listenAddress;
    if ('path' in a) {
      try {
        await this.bind({ path: a.path });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !(await staleSocket(a.path))) throw err;
        // A socket file left by a process that died: nobody answers on it, so take it over.
        fs.unlinkSync(a.path);
        this.log('warn', 'stale-socket-removed', { path: a.path });
        await this.bind({ path: a.path });
      }
      if (a.mode !== undefined) fs.chmodSync(a.path, a.mode);
      this.bound = { path: a.path };
    } else {
      const host = a.host ?? '127.0.0.1';
      await this.bind({ host, port: a.port });
      const addr = this.server.address() as net.AddressInfo;
      this.bound = { host, port: addr.port };
    }
    this.listenerClosed = new Promise((resolve) => this.server.once('close', () => resolve()));
    this.log('info', 'listening', { ...this.bound, ...this.limits });
    return this.bound;
  }

  get address(): NbdBoundAddress | undefined {
    return this.bound;
  }

  /** URI of an export on this server, for clients. */
  uri(exportName: string): string {
    if (!this.bound) throw new Error('NbdServer is not listening');
    return nbdUri(this.bound, exportName);
  }

  connections(): NbdConnectionInfo[] {
    return [...this.conns].map((c) => c.info());
  }

  /**
   * Graceful stop: no new connections; connections still in the handshake are closed; in transmission no further
   * request is read, the requests already handed to the backend finish and are answered, then the connection is
   * closed. With `timeoutMs`, whatever is still open then is destroyed.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        this.log('info', 'closing', { connections: this.conns.size });
        const listener = this.stopListening();
        const all = Promise.all([...this.conns].map((c) => c.shutdown('server closing')));
        let timer: NodeJS.Timeout | undefined;
        if (options.timeoutMs !== undefined) {
          timer = setTimeout(() => {
            for (const c of this.conns) c.destroy('server close timed out');
          }, options.timeoutMs);
        }
        await all;
        if (timer) clearTimeout(timer);
        await listener;
        this.log('info', 'closed', {});
      })();
    }
    return this.closing;
  }

  /** Forced stop: the listener closes and every connection is cut now; replies still pending are lost. */
  async destroy(): Promise<void> {
    const listener = this.stopListening();
    const all = Promise.all(
      [...this.conns].map((c) => {
        c.destroy('server destroyed');
        return c.whenClosed();
      }),
    );
    await all;
    await listener;
    if (!this.closing) this.log('info', 'closed', { forced: true });
  }

  /**
   * Ends every connection to one export, gracefully (as close() does per connection) or not. For a device that is
   * being removed or must be re-attached; the registry decides whether new connections may select it.
   */
  async disconnectExport(name: string, options: { graceful?: boolean } = {}): Promise<void> {
    const targets = [...this.conns].filter((c) => c.exportName === name);
    await Promise.all(
      targets.map((c) => {
        if (options.graceful === false) {
          c.destroy('export disconnected');
          return c.whenClosed();
        }
        return c.shutdown('export disconnected');
      }),
    );
  }

  private stopListening(): Promise<void> {
    if (this.server.listening) this.server.close();
    return this.listenerClosed ?? Promise.resolve();
  }

  private bind(opts: net.ListenOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.server.off('listening', onListening);
        reject(err);
      };
      const onListening = () => {
        this.server.off('error', onError);
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen(opts);
    });
  }

  private onConnection(socket: net.Socket): void {
    if (this.closing || !this.server.listening) {
      socket.destroy();
      return;
    }
    if (socket.remoteAddress) socket.setNoDelay(true);
    const conn = new NbdConnection(this.nextId++, socket, this.registry, this.limits, this.logger, (c) =>
      this.conns.delete(c),
    );
    this.conns.add(conn);
    conn.log(
      'info',
      'connection-open',
      socket.remoteAddress ? { remote: `${socket.remoteAddress}:${socket.remotePort}` } : {},
    );
    conn.start();
  }

  private log(level: NbdLogLevel, event: string, fields: Record<string, unknown>): void {
    try {
      this.logger({ level, event, ...fields });
    } catch {
      /* never let logging break the server */
    }
  }
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return m !== null && m[1].startsWith('127.');
}
