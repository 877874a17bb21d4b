// Configuration of walb-wdevd (config/wdevd.example.json shows every key).
import path from 'node:path';
import type convict from 'convict';
import type { LogLevel } from '../common/log';
import { checkMetricsListen, type MetricsConfig } from '../common/metrics';
import { loadConfig, logLevelSchema, metricsSchema } from './load';

export interface WdevdConfig extends MetricsConfig {
  role: 'wdevd';
  /** Events below this level are not logged (WALB_LOG_LEVEL overrides). */
  logLevel: LogLevel;
  runDir: string;
  stateDir: string;
  nbd: { socket: string; tcp: string; maxInflightMb: number };
  control: { socket: string };
  defaults: {
    maxLogpackKb: number;
    maxPendingMb: number;
    logFlushIntervalMb: number;
    logFlushIntervalMs: number;
    checkpointIntervalMs: number;
  };
}

const schema: convict.Schema<WdevdConfig> = {
  role: { doc: 'Always "wdevd".', format: ['wdevd'], default: 'wdevd' },
  logLevel: logLevelSchema,
  ...metricsSchema,
  runDir: {
    doc: 'Directory of the sockets shared with wdevc.',
    format: String,
    default: '/run/walb',
    env: 'WALB_RUN_DIR',
  },
  stateDir: {
    doc: 'Where the registry of wdevs is kept.',
    format: String,
    default: '/var/lib/walb/wdevd',
    env: 'WALB_WDEVD_STATE_DIR',
  },
  nbd: {
    socket: {
      doc: 'NBD unix socket; empty: RUNDIR/nbd.sock.',
      format: String,
      default: '',
      env: 'WALB_NBD_SOCKET',
    },
    tcp: {
      doc: 'Also serve NBD on this loopback HOST:PORT (empty: no TCP).',
      format: 'host-port',
      default: '',
      env: 'WALB_NBD_TCP',
    },
    maxInflightMb: {
      doc: 'Per NBD connection: bytes in flight before reading stops.',
      format: 'nat',
      default: 64,
    },
  },
  control: {
    socket: {
      doc: 'gRPC control socket; empty: RUNDIR/wdevd.sock.',
      format: String,
      default: '',
      env: 'WALB_WDEVD_SOCKET',
    },
  },
  defaults: {
    maxLogpackKb: { doc: 'Largest logpack of several IOs [KiB] (wdevc maxl).', format: 'nat', default: 32 },
    maxPendingMb: {
      doc: 'Logged data not yet on the ddev before writes wait [MiB].',
      format: 'nat',
      default: 32,
    },
    logFlushIntervalMb: { doc: 'Sync the ldev after this much log [MiB].', format: 'nat', default: 16 },
    logFlushIntervalMs: { doc: 'Sync the ldev at least this often [ms].', format: 'nat', default: 100 },
    checkpointIntervalMs: {
      doc: 'Super-sector checkpoint period [ms]; 0: none.',
      format: 'nat',
      default: 10000,
    },
  },
};

export interface WdevdOverrides {
  config?: string;
  runDir?: string;
  stateDir?: string;
  nbdTcp?: string;
  metricsListen?: string;
}

export function loadWdevdConfig(o: WdevdOverrides): WdevdConfig {
  const c = loadConfig(
    schema,
    o.config,
    { runDir: o.runDir, stateDir: o.stateDir, 'nbd.tcp': o.nbdTcp, metricsListen: o.metricsListen },
    '/etc/walb/wdevd.json',
  );
  if (!c.nbd.socket) c.nbd.socket = path.join(c.runDir, 'nbd.sock');
  if (!c.control.socket) c.control.socket = path.join(c.runDir, 'wdevd.sock');
  checkMetricsListen(c);
  return c;
}

/** Where wdevc finds the daemon: --socket, else WALB_WDEVD_SOCKET, else RUNDIR/wdevd.sock. */
export function wdevcSocket(socket: string | undefined, runDir: string | undefined): string {
  if (socket) return socket;
  if (process.env.WALB_WDEVD_SOCKET) return process.env.WALB_WDEVD_SOCKET;
  return path.join(runDir ?? process.env.WALB_RUN_DIR ?? '/run/walb', 'wdevd.sock');
}
