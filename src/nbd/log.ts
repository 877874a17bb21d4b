// Logging for the NBD server: one structured record per event, JSON lines on stderr unless the caller injects its own.

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
  return (record) => {
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), component: 'nbd', ...record })}\n`);
  };
}

export const silentLogger: NbdLogger = () => {};
