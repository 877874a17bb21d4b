// The frame of every server binary: options, config errors (exit 2), start failures (exit 1), readiness for
// systemd (Type=notify: READY=1 once listening, STOPPING=1 at a signal), and a graceful stop on SIGTERM/SIGINT
// (exit 0).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { native } from '../native';
import { errorCode, errorMessage } from './errors';
import { createLogger, type LogLevel, type Logger } from './log';
import { versionLine } from './version';

export interface Daemon {
  /** The level of its logs (config key logLevel, or WALB_LOG_LEVEL). */
  readonly config: { logLevel: LogLevel };
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function runDaemon(
  name: string,
  help: string,
  options: NonNullable<ParseArgsConfig['options']>,
  make: (values: Record<string, string | boolean | undefined>, log: Logger) => Daemon,
): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } },
      strict: true,
    }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    process.stderr.write(`${name}: ${errorMessage(err)}\n\n${help}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(help + '\n');
    return 0;
  }
  if (values.version) {
    process.stdout.write(versionLine(name) + '\n');
    return 0;
  }
  const logger = createLogger(name.replace(/^walb-/, ''));
  const log = logger.log;
  let daemon: Daemon;
  try {
    daemon = make(values, log);
  } catch (err) {
    process.stderr.write(`${name}: ${errorMessage(err)} [${errorCode(err) ?? 'INTERNAL'}]\n`);
    return 2;
  }
  logger.setLevel(daemon.config.logLevel);
  try {
    await daemon.start();
  } catch (err) {
    log('error', 'start-failed', { error: errorMessage(err), code: errorCode(err) });
    process.stderr.write(`${name}: ${errorMessage(err)} [${errorCode(err) ?? 'INTERNAL'}]\n`);
    await daemon.stop().catch(() => undefined);
    return 1;
  }
  notifyServiceManager('READY=1', log);
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log('info', 'signal', { signal });
      notifyServiceManager('STOPPING=1', log);
      daemon.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log('error', 'stop-failed', { error: errorMessage(err) });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/**
 * Tells systemd the daemon's state when it runs as a Type=notify unit (NOTIFY_SOCKET set; nothing otherwise).
 * A failure is logged, not fatal: systemd then times the start out, which names the cause better than an exit.
 */
function notifyServiceManager(state: 'READY=1' | 'STOPPING=1', log: Logger): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  try {
    native.notifyServiceManager(socket, state);
  } catch (err) {
    log('warn', 'notify-failed', { state, socket, error: errorMessage(err) });
  }
}
