// Configuration of walb-proxy (config/proxy.example.json shows every key).
import type convict from 'convict';
import type { LogLevel } from '../common/log';
import { checkMetricsListen, type MetricsConfig } from '../common/metrics';
import { checkTls, loadConfig, tlsSchema, logLevelSchema, metricsSchema } from './load';
import type { TlsFiles } from '../common/grpc';

export interface ProxyConfig extends MetricsConfig {
  role: 'proxy';
  /** Events below this level are not logged (WALB_LOG_LEVEL overrides). */
  logLevel: LogLevel;
  id: string;
  listen: string;
  dataDir: string;
  maxForegroundTasks: number;
  /** wdiff sends at once, across all volumes and archives (-bg). */
  backgroundTasks: number;
  /** Most wdiff bytes and files merged into one transfer (-wd, -wn). */
  maxWdiffSendMb: number;
  maxWdiffSendFiles: number;
  /** Retry delays of a refused or failed send [s] (-delay, -maxdelay). */
  retryDelaySec: number;
  maxRetryDelaySec: number;
  /** Give up (wdiff-send-error) when rejections go on and no wlog came for this long [s] (-rto). */
  retryTimeoutSec: number;
  /** Start every volume at startup (WalB starts them unless -stop). */
  startVolumes: boolean;
  /** Longest wait for a peer in a transfer before giving up on it [s] (-to). */
  socketTimeoutSec: number;
  /** Mutual TLS (all empty: plaintext). */
  tls: TlsFiles;
}

const schema: convict.Schema<ProxyConfig> = {
  role: { doc: 'Always "proxy".', format: ['proxy'], default: 'proxy' },
  logLevel: logLevelSchema,
  ...metricsSchema,
  id: {
    doc: 'Server id, as the layout file names it.',
    format: String,
    default: 'p0',
    env: 'WALB_PROXY_ID',
  },
  listen: {
    doc: 'gRPC address HOST:PORT.',
    format: 'host-port',
    default: '127.0.0.1:10100',
    env: 'WALB_PROXY_LISTEN',
  },
  dataDir: {
    doc: 'Received wdiffs and what is left to send, one directory per volume.',
    format: String,
    default: '/var/lib/walb/proxy',
    env: 'WALB_PROXY_DATA_DIR',
  },
  maxForegroundTasks: { doc: 'wlog receptions at once (-fg).', format: 'nat', default: 2 },
  backgroundTasks: { doc: 'wdiff sends at once (-bg).', format: 'nat', default: 1 },
  maxWdiffSendMb: { doc: 'Most MiB of wdiffs merged into one send (-wd).', format: 'nat', default: 128 },
  maxWdiffSendFiles: { doc: 'Most wdiffs merged into one send (-wn).', format: 'nat', default: 1000 },
  retryDelaySec: { doc: 'First retry delay [s] (-delay).', format: 'nat', default: 1 },
  maxRetryDelaySec: { doc: 'Longest retry delay [s] (-maxdelay).', format: 'nat', default: 300 },
  retryTimeoutSec: {
    doc: 'Give up after rejections for this long without new wlogs [s] (-rto).',
    format: 'nat',
    default: 1800,
  },
  startVolumes: {
    doc: 'Start every volume at startup; false leaves them Stopped until `start` (-stop).',
    format: 'strict-boolean',
    default: true,
  },
  socketTimeoutSec: {
    doc: 'Longest wait for the receiver of a transfer (an answer, room to send) before giving up on it [s] (-to); the final acknowledgement gets six times as long.',
    format: 'nat',
    default: 10,
  },
  tls: tlsSchema,
};

export function loadProxyConfig(o: {
  config?: string;
  listen?: string;
  dataDir?: string;
  metricsListen?: string;
}): ProxyConfig {
  const c = loadConfig(
    schema,
    o.config,
    { listen: o.listen, dataDir: o.dataDir, metricsListen: o.metricsListen },
    '/etc/walb/proxy.json',
  );
  checkTls(c.tls);
  checkMetricsListen(c);
  return c;
}
