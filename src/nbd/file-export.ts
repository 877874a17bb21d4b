// A regular file or block device as an NBD export: the transmission phase runs in C++ over the file backend
// (native/src/core/nbd_file_backend.hpp). For tests, with the backend's fault injection, and for serving images.
import {
  native,
  type NativeNbdFile,
  type NbdFileCall,
  type NbdFileFault,
  type NbdFileStats,
} from '../native';
import type { NbdExport, NbdTransmission, TransmissionLimits, TransmissionStats } from './types';

export interface FileExportOptions {
  name: string;
  description?: string;
  readOnly?: boolean;
  multiConn?: boolean;
  /** Worker threads running the requests (default 4). */
  threads?: number;
  /** Tests: requests delayed or failed on purpose. */
  faults?: NbdFileFault[];
  /** Tests: keep every request for calls(). */
  record?: boolean;
}

export class FileExport implements NbdExport {
  readonly name: string;
  readonly description?: string;
  readonly readOnly: boolean;
  readonly multiConn?: boolean;
  private readonly file: NativeNbdFile;

  /** Opens `path`; the export's size is the file's size now. */
  constructor(
    readonly path: string,
    options: FileExportOptions,
  ) {
    this.name = options.name;
    this.description = options.description;
    this.multiConn = options.multiConn;
    this.file = new native.NbdFile(path, {
      readOnly: options.readOnly,
      threads: options.threads,
      faults: options.faults,
      record: options.record,
    });
    this.readOnly = this.file.readOnly;
  }

  get size(): number {
    return this.file.size;
  }

  serve(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): NbdTransmission {
    return this.file.serve(fd, pending, limits, onClose);
  }

  /** Tests: park every request until release(). */
  hold(): void {
    this.file.hold();
  }

  release(): void {
    this.file.release();
  }

  stats(): NbdFileStats {
    return this.file.stats();
  }

  /** Tests: every request so far, in the order they reached the backend (with `record`). */
  calls(): NbdFileCall[] {
    return this.file.calls();
  }

  /** Requests queued, and any sent later, fail with ESHUTDOWN; end the connections with the server first. */
  close(): void {
    this.file.close();
  }
}
