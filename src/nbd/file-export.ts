// A regular file or block device as an NBD export: the transmission phase runs in C++ over the file backend
// (native/src/core/nbd_file_backend.hpp). For tests, with the backend's fault injection, and for serving images.
import {
  native,
  type NativeNbdFile,
  type NbdFileCall,
  type NbdFileFault,
  type NbdFileStats,
} from '../native';
import { NativeExport, type NativeExportOptions } from './native-export';

export interface FileExportOptions extends NativeExportOptions {
  readOnly?: boolean;
  multiConn?: boolean;
  /** Worker threads running the requests (default 4). */
  threads?: number;
  /** Tests: requests delayed or failed on purpose. */
  faults?: NbdFileFault[];
  /** Tests: keep every request for calls(). */
  record?: boolean;
}

export class FileExport extends NativeExport<NativeNbdFile> {
  readonly readOnly: boolean;
  readonly multiConn?: boolean;

  /** Opens `path`; the export's size is the file's size now. */
  constructor(
    readonly path: string,
    options: FileExportOptions,
  ) {
    super(
      new native.NbdFile(path, {
        readOnly: options.readOnly,
        threads: options.threads,
        faults: options.faults,
        record: options.record,
      }),
      options,
    );
    this.multiConn = options.multiConn;
    this.readOnly = this.backend.readOnly;
  }

  /** Tests: park every request until release(). */
  hold(): void {
    this.backend.hold();
  }

  release(): void {
    this.backend.release();
  }

  stats(): NbdFileStats {
    return this.backend.stats();
  }

  /** Tests: every request so far, in the order they reached the backend (with `record`). */
  calls(): NbdFileCall[] {
    return this.backend.calls();
  }
}
