// Structured logs of the daemons: one JSON line per event on stderr (journald keeps them as they are).
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void;

export function jsonLogger(component: string, stream: NodeJS.WritableStream = process.stderr): Logger {
  return (level, event, fields = {}) => {
    stream.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, component, event, ...fields })}\n`,
    );
  };
}

export const silentLog: Logger = () => {};
