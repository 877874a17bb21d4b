// Configuration of walb-archive (config/archive.example.json shows every key).
import path from 'node:path';
import type convict from 'convict';
import { WalbError } from '../common/errors';
import type { LogLevel } from '../common/log';
import { checkMetricsListen, isLoopback, type MetricsConfig } from '../common/metrics';
import {
  checkPlaintextListen,
  checkTls,
  hostPortFormat,
  loadConfig,
  tlsSchema,
  logLevelSchema,
  metricsSchema,
  plaintextSchema,
} from './load';
import type { ServerTls } from '../common/grpc';

export interface ArchiveConfig extends MetricsConfig {
  role: 'archive';
  /** Events below this level are not logged (WALB_LOG_LEVEL overrides). */
  logLevel: LogLevel;
  id: string;
  listen: string;
  dataDir: string;
  /** Full backups, wdiff receptions and restores at once (WalB's -fg). */
  maxForegroundTasks: number;
  /** fdatasync while writing a base image, every this many MiB (-fi): bounds dirty memory and the final sync. */
  fsyncIntervalMb: number;
  /**
   * The native bulk receiver's address (full-backup bytes): HOST:PORT, '' for the listen host and a port the
   * system picks, or 'off' to take them on the main port (slower).
   */
  bulkListen: string;
  /** Read rate limit of a full replication's scan of the base image [bytes/s], 0 = unlimited. */
  replicateBytesPerSec: number;
  /** Rate limit of an apply [diff bytes/s], 0 = unlimited. */
  applyBytesPerSec: number;
  /** Longest wait for the destination of a replication step (an answer, room to send) [s]. */
  socketTimeoutSec: number;
  /** Listen without TLS on an address other than loopback. */
  plaintextAllowRemote: boolean;
  /** Mutual TLS (all empty: plaintext); also how a replication connects to its destination. */
  tls: ServerTls;
  /** Snapshot exports over NBD (docs/servers.md §6.10). */
  export: {
    /** Unix socket of the exports; empty: DATADIR/export.sock. */
    socket: string;
    /** Also serve the exports on this HOST:PORT (empty: no TCP); loopback unless tcpAllowRemote. */
    tcp: string;
    tcpAllowRemote: boolean;
    /** Worker threads reading each export's requests. */
    threads: number;
    /** Exports at once on this archive. */
    maxExports: number;
  };
  /** The maintenance worker (docs/servers.md §6.8). */
  maintenance: MaintenanceConfig;
}

/** The maintenance worker's policy (docs/servers.md §6.8); `applyBytesPerSec` paces its applies and merges. */
export interface MaintenanceConfig {
  enabled: boolean;
  /** How often the worker looks at every volume [s]. */
  intervalSec: number;
  /** Snapshots younger than this stay restorable; the worker applies up to the newest older one [s]. */
  keepPeriodSec: number;
  /** The worker merges when a volume has more diffs than this. */
  mergeDiffs: number;
  /** The largest diff a merge of the worker makes [bytes]. */
  mergeMaxBytes: number;
  /** Tasks of the worker at once (each on another volume). */
  maxTasks: number;
  /** Archives (HOST:PORT) replicated from this one or synchronizing with it: nothing they need is applied or merged. */
  secondaries: string[];
}

const schema: convict.Schema<ArchiveConfig> = {
  role: { doc: 'Always "archive".', format: ['archive'], default: 'archive' },
  logLevel: logLevelSchema,
  ...metricsSchema,
  id: {
    doc: 'Server id, as the layout file names it.',
    format: String,
    default: 'a0',
    env: 'WALB_ARCHIVE_ID',
  },
  listen: {
    doc: 'gRPC address HOST:PORT.',
    format: 'host-port',
    default: '127.0.0.1:10200',
    env: 'WALB_ARCHIVE_LISTEN',
  },
  dataDir: {
    doc: 'Base images, wdiffs and restored images, one directory per volume.',
    format: String,
    default: '/var/lib/walb/archive',
    env: 'WALB_ARCHIVE_DATA_DIR',
  },
  maxForegroundTasks: { doc: 'Foreground tasks at once (-fg).', format: 'nat', default: 2 },
  fsyncIntervalMb: {
    doc: 'fdatasync a base image being written every this many MiB (-fi).',
    format: 'nat',
    default: 1024,
  },
  bulkListen: {
    doc:
      'Native bulk receiver for full backups, HOST:PORT; empty: the listen host, a port the system picks ' +
      '(set one when a firewall is in the way); "off": full backups go through the main port (slower).',
    format: 'bulk-listen',
    default: '',
    env: 'WALB_ARCHIVE_BULK_LISTEN',
  },
  replicateBytesPerSec: {
    doc: "Read rate limit of a full replication's scan of the base image [bytes/s], 0 = unlimited.",
    format: 'nat',
    default: 0,
  },
  applyBytesPerSec: {
    doc: 'Rate limit of an apply [diff bytes/s], 0 = unlimited: after each diff written into the base image, the apply waits until its bytes fit the rate.',
    format: 'nat',
    default: 0,
  },
  socketTimeoutSec: {
    doc: 'Longest wait for the destination of a replication step (an answer, room to send) before giving up on it [s]; the final acknowledgement gets six times as long.',
    format: 'nat',
    default: 10,
  },
  plaintextAllowRemote: plaintextSchema.plaintextAllowRemote,
  tls: tlsSchema,
  export: {
    socket: {
      doc: 'Unix socket on which snapshot exports are served over NBD; empty: DATADIR/export.sock.',
      format: String,
      default: '',
      env: 'WALB_ARCHIVE_EXPORT_SOCKET',
    },
    tcp: {
      doc: 'Also serve snapshot exports on this loopback HOST:PORT (empty: no TCP); another address needs export.tcpAllowRemote.',
      format: 'host-port',
      default: '',
      env: 'WALB_ARCHIVE_EXPORT_TCP',
    },
    tcpAllowRemote: {
      doc: 'Allow export.tcp on an address other than loopback (NBD has no TLS nor authentication here).',
      format: 'strict-boolean',
      default: false,
    },
    threads: {
      doc: 'Worker threads reading the requests of each export (1..64).',
      format: 'nat',
      default: 4,
    },
    maxExports: { doc: 'Snapshot exports at once on this archive.', format: 'nat', default: 16 },
  },
  maintenance: {
    enabled: {
      doc: 'Run the maintenance worker: apply old snapshots, merge runs of small diffs (docs/servers.md §6.8).',
      format: 'strict-boolean',
      default: false,
    },
    intervalSec: { doc: 'How often the worker looks at every volume [s].', format: 'nat', default: 60 },
    keepPeriodSec: {
      doc: 'Snapshots younger than this stay restorable; the worker applies up to the newest older one [s].',
      format: 'nat',
      default: 7 * 86400,
    },
    mergeDiffs: {
      doc: 'Merge when a volume has more diffs than this.',
      format: 'nat',
      default: 100,
    },
    mergeMaxBytes: {
      doc: 'The largest diff a merge of the worker makes [bytes] (the sum of its inputs).',
      format: 'nat',
      default: 1 << 30,
    },
    maxTasks: {
      doc: 'Tasks of the worker at once, each on another volume; each holds a foreground slot.',
      format: 'nat',
      default: 1,
    },
    secondaries: {
      doc:
        'Archives HOST:PORT that replicate from this one or synchronize with it: the worker never applies or ' +
        'merges past the latest snapshot of the volume there, and waits while one does not answer.',
      format: (v: unknown) => {
        if (!Array.isArray(v)) throw new Error('must be a list of HOST:PORT');
        for (const a of v) {
          if (a === '') throw new Error('an empty address');
          hostPortFormat.validate(a);
        }
      },
      default: [] as string[],
    },
  },
};

export function loadArchiveConfig(o: {
  config?: string;
  listen?: string;
  dataDir?: string;
  bulkListen?: string;
  metricsListen?: string;
}): ArchiveConfig {
  const c = loadConfig(
    schema,
    o.config,
    { listen: o.listen, dataDir: o.dataDir, bulkListen: o.bulkListen, metricsListen: o.metricsListen },
    '/etc/walb/archive.json',
  );
  checkTls(c.tls);
  checkPlaintextListen(c, {
    listen: c.listen,
    ...(c.bulkListen && c.bulkListen !== 'off' ? { bulkListen: c.bulkListen } : {}),
  });
  checkMetricsListen(c);
  if (!c.export.socket) c.export.socket = path.join(c.dataDir, 'export.sock');
  if (c.export.tcp && !isLoopback(c.export.tcp) && !c.export.tcpAllowRemote)
    throw new WalbError(
      'CONFIG',
      `export.tcp: ${c.export.tcp} is not a loopback address; NBD has no TLS nor authentication, so anyone who ` +
        'reaches it could read every exported snapshot; set export.tcpAllowRemote to true to serve it there',
    );
  if (c.export.threads < 1 || c.export.threads > 64)
    throw new WalbError('CONFIG', `export.threads: ${c.export.threads} is not in 1..64`);
  return c;
}
