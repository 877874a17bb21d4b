// What the NBD server needs from the device layer. walb-wdevd implements NbdExport per wdev and one registry.

/**
 * One exported device. The server calls these methods concurrently (requests are pipelined, several connections
 * may use one export) and only with requests it has already validated:
 *
 * - `offset` and `length` are multiples of the server's minimum block size (512 by default) and
 *   `offset + length <= size` (as `size` reads at the time of the request);
 * - READ and WRITE lengths are at most the maximum payload (32 MiB by default); TRIM and WRITE_ZEROES lengths are
 *   at most 2^32 - 1; zero-length requests are answered by the server without calling the backend;
 * - no write-type call reaches a `readOnly` export.
 *
 * Contract back to the server:
 * - `read` resolves with exactly `length` bytes, the newest data (including writes resolved on any connection).
 * - `write`, `trim`, `writeZeroes` resolve when the data is stored as far as a later `flush` needs (the server
 *   replies to the client only then); with `fua` they resolve only once that data is durable.
 *   `write` owns `data` after the call (the server never touches it again), so it may keep it without copying.
 * - `flush` resolves once every write-type call that had resolved before `flush` was called — on any connection to
 *   this export — is durable. The server advertises NBD_FLAG_CAN_MULTI_CONN unless `multiConn === false`, which
 *   promises exactly that cross-connection behaviour.
 * - `trim` is a hint: content of the range is undefined afterwards; it may do nothing.
 * - `writeZeroes` must make the range read back as zeroes (it may deallocate).
 * - Throw (or reject with) an NbdError subclass to choose the NBD error; anything else becomes EIO.
 */
export interface NbdExport {
  /** Export name as clients ask for it (at most 4096 bytes of UTF-8). */
  readonly name: string;
  /** Size in bytes. Read at each handshake (advertised) and at each request (bounds check). */
  readonly size: number;
  /** Human-readable description (NBD_OPT_LIST, NBD_INFO_DESCRIPTION). */
  readonly description?: string;
  /** Sets NBD_FLAG_READ_ONLY; write, trim and write-zeroes requests are refused with EPERM. */
  readonly readOnly?: boolean;
  /** Advertise NBD_FLAG_CAN_MULTI_CONN (default true); see flush above. */
  readonly multiConn?: boolean;
  /**
   * Optional: serve the transmission phase outside JS (walb-wdevd does it in C++). Called once the export is
   * selected and the handshake replies are flushed, with the socket's descriptor (the callee duplicates it; the
   * server then closes its own socket object), the request bytes already read, and the limits to enforce.
   * `onClose` is called once when that connection ends. Throwing keeps the connection in the JS server.
   */
  adoptTransmission?(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): void;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
}

export interface TransmissionLimits {
  minBlockSize: number;
  maxPayload: number;
  maxInflightBytes: number;
  maxInflightRequests: number;
}

export interface TransmissionStats {
  reason: string;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  rejected: number;
  backendErrors: number;
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
