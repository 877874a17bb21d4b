// NBD protocol server: the handshake in TypeScript, the transmission phase in C++ behind each export's `serve`.
// walb-wdevd serves its wdevs (src/wdev/device.ts); FileExport serves a file or block device; SnapshotExport an
// archive's snapshot.
export { NbdServer, nbdUri } from './server';
export type { NbdServerOptions, NbdListenAddress, NbdBoundAddress } from './server';
export type { NbdConnectionInfo } from './connection';
export { FileExport } from './file-export';
export type { FileExportOptions } from './file-export';
export { SnapshotExport } from './snapshot-export';
export type { SnapshotExportOptions } from './snapshot-export';
export { MapExportRegistry } from './types';
export type {
  NbdExport,
  NbdExportRegistry,
  NbdTransmission,
  TransmissionEvent,
  TransmissionLimits,
  TransmissionStats,
} from './types';
export { jsonLinesLogger, silentLogger } from './log';
export type { NbdLogger, NbdLogRecord, NbdLogLevel } from './log';
