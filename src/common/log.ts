// The one logger of every component (docs/operations.md, "Logs"): one JSON line per event on stderr, events below
// the level left out, and under systemd (JOURNAL_STREAM set) each line prefixed with its journald priority so that
// `journalctl -p warning` finds the warnings.
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type Logger = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void;

/** The syslog priority journald reads from a `<N>` line prefix. */
export const JOURNALD_PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, info: 6, debug: 7 };

export function isLogLevel(s: unknown): s is LogLevel {
  return (LOG_LEVELS as readonly unknown[]).includes(s);
}

export interface LogOptions {
  /** Events below this level are left out (default info). */
  level?: LogLevel;
  stream?: NodeJS.WritableStream;
  /** Prefix each line with its journald priority (default: on stderr when JOURNAL_STREAM is set). */
  journald?: boolean;
}

/** One event as the logger writes it. */
export function logLine(
  component: string,
  level: LogLevel,
  event: string,
  fields: Record<string, unknown>,
  journald: boolean,
  time = new Date(),
): string {
  const json = JSON.stringify({ time: time.toISOString(), level, component, event, ...fields });
  return `${journald ? `<${JOURNALD_PRIORITY[level]}>` : ''}${json}\n`;
}

/** A logger whose level can be set once the configuration is read (the daemons log before that). */
export interface LevelledLogger {
  log: Logger;
  setLevel(level: LogLevel): void;
}

export function createLogger(component: string, opts: LogOptions = {}): LevelledLogger {
  const stream = opts.stream ?? process.stderr;
  const journald = opts.journald ?? (stream === process.stderr && process.env.JOURNAL_STREAM !== undefined);
  let threshold = LOG_LEVELS.indexOf(opts.level ?? 'info');
  return {
    log: (level, event, fields = {}) => {
      if (LOG_LEVELS.indexOf(level) < threshold) return;
      stream.write(logLine(component, level, event, fields, journald));
    },
    setLevel(level) {
      threshold = LOG_LEVELS.indexOf(level);
    },
  };
}

export const silentLog: Logger = () => {};

/**
 * Milliseconds spent in each phase of a piece of work, for its log event (where the time of a step goes):
 * `lap(phase)` closes the phase that ran since the previous lap, or since the start.
 */
export class PhaseTimes {
  readonly ms: Record<string, number> = {};
  private last = performance.now();

  lap(phase: string): void {
    const now = performance.now();
    this.ms[phase] = (this.ms[phase] ?? 0) + Math.round(now - this.last);
    this.last = now;
  }
}
