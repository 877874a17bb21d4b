// A native backend served as an NBD export: the handshake stays in TypeScript (server.ts), the transmission phase
// of each connection runs in C++ over the backend (native/src/addon/nbd_addon.cpp), and closing the export closes
// the backend. FileExport and SnapshotExport are this with their own backends and extras.
import type { NativeServe } from '../native';
import type { NbdExport, NbdTransmission, TransmissionLimits, TransmissionStats } from './types';

/** What every native NBD backend object has (NbdFile, NbdSnapshot). */
export interface NativeNbdBackend {
  readonly size: number;
  serve: NativeServe;
  /** Requests queued, and any sent later, fail with ESHUTDOWN. */
  close(): void;
}

export interface NativeExportOptions {
  name: string;
  description?: string;
}

export abstract class NativeExport<Backend extends NativeNbdBackend> implements NbdExport {
  readonly name: string;
  readonly description?: string;
  abstract readonly readOnly: boolean;

  protected constructor(
    protected readonly backend: Backend,
    options: NativeExportOptions,
  ) {
    this.name = options.name;
    this.description = options.description;
  }

  /** The backend's size now, read at each handshake. */
  get size(): number {
    return this.backend.size;
  }

  serve(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): NbdTransmission {
    return this.backend.serve(fd, pending, limits, onClose);
  }

  /** Requests queued, and any sent later, fail with ESHUTDOWN; end the connections with the server first. */
  close(): void {
    this.backend.close();
  }
}
