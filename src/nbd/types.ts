// What the NBD server needs from the device layer. walb-wdevd implements NbdExport per wdev and one registry.

/**
 * One exported device. The TypeScript server does the handshake only; once a client has selected the export, it
 * hands the connection to `serve`, and the transmission phase runs in C++ (native/src/core/nbd_wire.*): requests
 * are parsed, checked and answered there and given to the export's backend (nbd_backend.hpp). Implementations:
 * WdevDevice (a wdev) and FileExport (a file or block device).
 *
 * - `size`, `readOnly` and `multiConn` are what the handshake advertises; the backend behind `serve` must keep
 *   them (the C++ side refuses write-type requests to a read-only backend with EPERM, and a backend's flush covers
 *   writes completed on every connection, which is what NBD_FLAG_CAN_MULTI_CONN promises).
 * - `serve` is called once per connection, after the handshake replies have left the socket, with the socket's
 *   descriptor (the callee duplicates it; the server then closes its own socket object), the request bytes already
 *   read, and the limits to enforce. It returns the connection's handle; `onClose` is called exactly once, when the
 *   connection has ended. Throwing closes the connection.
 */
export interface NbdExport {
  /** Export name as clients ask for it (at most 4096 bytes of UTF-8). */
  readonly name: string;
  /** Size in bytes, read at each handshake. */
  readonly size: number;
  /** Human-readable description (NBD_OPT_LIST, NBD_INFO_DESCRIPTION). */
  readonly description?: string;
  /** Sets NBD_FLAG_READ_ONLY; write, trim and write-zeroes requests are refused with EPERM. */
  readonly readOnly?: boolean;
  /** Advertise NBD_FLAG_CAN_MULTI_CONN (default true); see above. */
  readonly multiConn?: boolean;
  serve(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): NbdTransmission;
}

export interface TransmissionLimits {
  minBlockSize: number;
  maxPayload: number;
  maxInflightBytes: number;
  maxInflightRequests: number;
}

/** A rejected request or a failed backend call; a connection reports its first few. */
export interface TransmissionEvent {
  kind: 'request-rejected' | 'backend-error';
  /** READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, ... */
  command: string;
  /** The NBD error sent: EINVAL, EIO, ... */
  error: string;
  offset: number;
  length: number;
  /** Why the request was rejected, or what the backend reported (may be empty). */
  cause: string;
}

export interface TransmissionStats {
  /** Why the connection ended; empty while it runs. */
  reason: string;
  requests: number;
  /** READ bytes answered. */
  bytesRead: number;
  /** WRITE payload bytes handed to the backend. */
  bytesWritten: number;
  rejected: number;
  backendErrors: number;
  /** Requests handed to the backend and not answered yet. */
  inflightRequests: number;
  /** READ and WRITE bytes of those, and READ bytes not written to the socket yet. */
  inflightBytes: number;
  /** The client broke the protocol (the reason says how). */
  protocolError: boolean;
  events: TransmissionEvent[];
}

/** One connection in its transmission phase. */
export interface NbdTransmission {
  /** Counters now. */
  stats(): TransmissionStats;
  /** Graceful end: no further request is read; those in flight are answered; then the socket closes. */
  shutdown(reason: string): void;
  /** Hard end: the socket is cut now; replies still pending are lost. */
  abort(reason: string): void;
}

/** The set of exports, consulted at every handshake (so exports may come and go while the server runs). */
export interface NbdExportRegistry {
  get(name: string): NbdExport | undefined;
  list(): NbdExport[];
  /** Name of the export that an empty export name selects; none if absent or undefined. */
  defaultName?(): string | undefined;
}

/** A registry over a fixed set or a Map kept up to date by the caller. */
export class MapExportRegistry implements NbdExportRegistry {
  readonly exports: Map<string, NbdExport>;
  private defaultExport: string | undefined;

  constructor(exports: Iterable<NbdExport> = [], defaultName?: string) {
    this.exports = new Map();
    for (const e of exports) this.exports.set(e.name, e);
    this.defaultExport = defaultName;
  }

  add(e: NbdExport): void {
    this.exports.set(e.name, e);
  }

  remove(name: string): boolean {
    return this.exports.delete(name);
  }

  setDefault(name: string | undefined): void {
    this.defaultExport = name;
  }

  get(name: string): NbdExport | undefined {
    return this.exports.get(name);
  }

  list(): NbdExport[] {
    return [...this.exports.values()];
  }

  defaultName(): string | undefined {
    return this.defaultExport;
  }
}
