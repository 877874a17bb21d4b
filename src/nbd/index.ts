// NBD protocol server for walb-wdevd: the daemon implements NbdExport per device and runs one NbdServer.
export { NbdServer, nbdUri } from './server';
export type { NbdServerOptions, NbdListenAddress, NbdBoundAddress } from './server';
export type { NbdConnectionInfo } from './connection';
export { MapExportRegistry } from './types';
export type { NbdExport, NbdExportRegistry } from './types';
export {
  NbdError,
  NbdIoError,
  NbdInvalidError,
  NbdNoSpaceError,
  NbdPermissionError,
  NbdShutdownError,
  nbdErrnoOf,
  nbdErrnoName,
  NBD_EPERM,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_ESHUTDOWN,
} from './errors';
export type { NbdErrno } from './errors';
export { jsonLinesLogger, silentLogger } from './log';
export type { NbdLogger, NbdLogRecord, NbdLogLevel } from './log';
