// A restorable snapshot of an archive as a read-only NBD export: the base image and the wdiffs its restore applies,
// read at random without restoring anything (docs/servers.md §6.10). The table of extents is built in C++ by open();
// the transmission phase runs in C++ over the snapshot backend (native/src/core/nbd_snapshot_backend.hpp).
import { native, type NativeNbdSnapshot } from '../native';
import type { NbdExport, NbdTransmission, TransmissionLimits, TransmissionStats } from './types';

export interface SnapshotExportOptions {
  name: string;
  description?: string;
  /** Worker threads reading the requests (default 4). */
  threads?: number;
}

export class SnapshotExport implements NbdExport {
  readonly name: string;
  readonly description?: string;
  readonly readOnly = true;
  private readonly snapshot: NativeNbdSnapshot;

  private constructor(snapshot: NativeNbdSnapshot, options: SnapshotExportOptions) {
    this.snapshot = snapshot;
    this.name = options.name;
    this.description = options.description;
  }

  /** Opens `base` and `diffs` (oldest first) and indexes their records; the export's size is the base's size. */
  static async open(base: string, diffs: string[], options: SnapshotExportOptions): Promise<SnapshotExport> {
    const snapshot = new native.NbdSnapshot(base, diffs, { threads: options.threads });
    try {
      await snapshot.open();
    } catch (err) {
      snapshot.close();
      throw err;
    }
    return new SnapshotExport(snapshot, options);
  }

  get size(): number {
    return this.snapshot.size;
  }

  /** Pieces of the table of extents and records indexed: what the export holds in memory. */
  indexed(): { extents: number; storedImages: number } {
    return this.snapshot.indexed();
  }

  /** The bytes of [offset, offset + length), read as a client would (512-byte aligned). */
  read(range: { offset: number; length: number }): Promise<Buffer> {
    return this.snapshot.read(range);
  }

  serve(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): NbdTransmission {
    return this.snapshot.serve(fd, pending, limits, onClose);
  }

  /** Reads queued, and any sent later, fail with ESHUTDOWN; end the connections with the server first. */
  close(): void {
    this.snapshot.close();
  }
}
