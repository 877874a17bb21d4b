// Configuration of walb-storage (config/storage.example.json shows every key).
import type convict from 'convict';
import type { LogLevel } from '../common/log';
import { checkMetricsListen, type MetricsConfig } from '../common/metrics';
import { WalbError } from '../common/errors';
import { checkTls, loadConfig, tlsSchema, logLevelSchema, metricsSchema } from './load';
import type { TlsFiles } from '../common/grpc';

export interface StorageConfig extends MetricsConfig {
  role: 'storage';
  /** Events below this level are not logged (WALB_LOG_LEVEL overrides). */
  logLevel: LogLevel;
  id: string;
  listen: string;
  dataDir: string;
  /** The primary archive HOST:PORT (full backups go there). */
  archive: string;
  /** Proxies in priority order. */
  proxies: string[];
  /** walb-wdevd's control socket. */
  wdevdSocket: string;
  /** Most log per wlog transfer, also the gid reservation unit [MiB] (-wl). */
  maxWlogSendMb: number;
  /** Implicit snapshot interval [s] (-snapintvl). */
  snapshotIntervalSec: number;
  retryDelaySec: number;
  maxRetryDelaySec: number;
  maxForegroundTasks: number;
  backgroundTasks: number;
  /** Heartbeat of the proxies (docs/servers.md §4.4). */
  proxyHeartbeatSec: number;
  proxyHeartbeatTimeoutSec: number;
  /** Read rate limit of a full backup's scan [bytes/s], 0 = unlimited (-fst). */
  fullScanBytesPerSec: number;
  /** Longest wait for a peer in a transfer before giving up on it [s] (-to). */
  socketTimeoutSec: number;
  /** Mutual TLS (all empty: plaintext). */
  tls: TlsFiles;
}

const schema: convict.Schema<StorageConfig> = {
  role: { doc: 'Always "storage".', format: ['storage'], default: 'storage' },
  logLevel: logLevelSchema,
  ...metricsSchema,
  id: {
    doc: 'Server id, as the layout file names it.',
    format: String,
    default: 's0',
    env: 'WALB_STORAGE_ID',
  },
  listen: {
    doc: 'gRPC address HOST:PORT.',
    format: 'host-port',
    default: '127.0.0.1:10000',
    env: 'WALB_STORAGE_LISTEN',
  },
  dataDir: {
    doc: 'Volume metadata.',
    format: String,
    default: '/var/lib/walb/storage',
    env: 'WALB_STORAGE_DATA_DIR',
  },
  archive: {
    doc: 'Primary archive HOST:PORT (--archive overrides).',
    format: 'host-port',
    default: '',
    env: 'WALB_ARCHIVE',
  },
  proxies: {
    doc: 'Proxies HOST:PORT in priority order (--proxy a,b overrides).',
    format: (v: unknown) => {
      if (!Array.isArray(v)) throw new Error('must be a list of HOST:PORT');
      for (const p of v)
        if (typeof p !== 'string' || !/^[^\s:]+:\d{1,5}$/.test(p))
          throw new Error(`bad proxy address '${String(p)}'`);
    },
    default: [] as string[],
  },
  wdevdSocket: {
    doc: 'walb-wdevd control socket.',
    format: String,
    default: '/run/walb/wdevd.sock',
    env: 'WALB_WDEVD_SOCKET',
  },
  maxWlogSendMb: { doc: 'Most log per transfer [MiB] (-wl).', format: 'nat', default: 128 },
  snapshotIntervalSec: { doc: 'Implicit snapshot interval [s] (-snapintvl).', format: 'nat', default: 10 },
  retryDelaySec: { doc: 'First retry delay [s] (-delay).', format: 'nat', default: 1 },
  maxRetryDelaySec: { doc: 'Longest retry delay [s] (-maxdelay).', format: 'nat', default: 300 },
  maxForegroundTasks: { doc: 'Full backups at once (-fg).', format: 'nat', default: 2 },
  backgroundTasks: { doc: 'wlog transfers at once (-bg).', format: 'nat', default: 1 },
  proxyHeartbeatSec: {
    doc: 'A proxy is checked again this long after its last check [s]; one check per second at most.',
    format: 'nat',
    default: 10,
  },
  proxyHeartbeatTimeoutSec: { doc: 'Time a proxy has to answer a heartbeat [s].', format: 'nat', default: 3 },
  fullScanBytesPerSec: {
    doc: "Read rate limit of a full backup's scan of the data device [bytes/s], 0 = unlimited (-fst).",
    format: 'nat',
    default: 0,
  },
  socketTimeoutSec: {
    doc: 'Longest wait for the receiver of a transfer (an answer, room to send) before giving up on it [s] (-to); the final acknowledgement gets six times as long.',
    format: 'nat',
    default: 10,
  },
  tls: tlsSchema,
};

export function loadStorageConfig(o: {
  config?: string;
  listen?: string;
  dataDir?: string;
  archive?: string;
  proxy?: string;
  wdevdSocket?: string;
  metricsListen?: string;
}): StorageConfig {
  const c = loadConfig(
    schema,
    o.config,
    {
      listen: o.listen,
      dataDir: o.dataDir,
      archive: o.archive,
      proxies: o.proxy === undefined ? undefined : o.proxy.split(',').filter(Boolean),
      wdevdSocket: o.wdevdSocket,
      metricsListen: o.metricsListen,
    },
    '/etc/walb/storage.json',
  );
  if (!c.archive)
    throw new WalbError('CONFIG', 'archive: the primary archive is required (--archive HOST:PORT)');
  if (c.proxies.length === 0)
    throw new WalbError('CONFIG', 'proxies: at least one proxy is required (--proxy HOST:PORT,...)');
  checkTls(c.tls);
  checkMetricsListen(c);
  return c;
}
