// Logging for the NBD server: one structured record per event, through the common logger (src/common/log.ts)
// unless the caller injects its own.
import { createLogger } from '../common/log';

export type NbdLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface NbdLogRecord {
  level: NbdLogLevel;
  /** Stable event name: listening, closed, connection-open, connection-close, protocol-error, backend-error, ... */
  event: string;
  msg?: string;
  [field: string]: unknown;
}

export type NbdLogger = (record: NbdLogRecord) => void;

/** JSON lines (`{"time":...,"level":...,"component":"nbd","event":...}`) written to `stream` (stderr by default). */
export function jsonLinesLogger(stream: NodeJS.WritableStream = process.stderr): NbdLogger {
  const { log } = createLogger('nbd', { stream, level: 'debug' });
  return ({ level, event, ...fields }) => log(level, event, fields);
}

export const silentLogger: NbdLogger = () => {};
