// A restorable snapshot of an archive as a read-only NBD export: the base image and the wdiffs its restore applies,
// read at random without restoring anything (docs/servers.md §6.10). The table of extents is built in C++ by open();
// the transmission phase runs in C++ over the snapshot backend (native/src/core/nbd_snapshot_backend.hpp).
import { native, type NativeNbdSnapshot } from '../native';
import { NativeExport, type NativeExportOptions } from './native-export';

export interface SnapshotExportOptions extends NativeExportOptions {
  /** Worker threads reading the requests (default 4). */
  threads?: number;
}

export class SnapshotExport extends NativeExport<NativeNbdSnapshot> {
  readonly readOnly = true;

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

  /** Pieces of the table of extents and records indexed: what the export holds in memory. */
  indexed(): { extents: number; storedImages: number } {
    return this.backend.indexed();
  }

  /** The bytes of [offset, offset + length), read as a client would (512-byte aligned). */
  read(range: { offset: number; length: number }): Promise<Buffer> {
    return this.backend.read(range);
  }
}
