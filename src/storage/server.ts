// walb-storage's wiring (docs/servers.md §4): owns the config, the volumes (volumes.ts, volume-store.ts), the
// clients of walb-wdevd, the archive and the proxies (proxy-monitor.ts), the wlog task queue (wlog-shipping.ts)
// and the full backups (full-backup.ts); starts and stops them and the gRPC server whose handlers
// (volume-handlers.ts, backup-handlers.ts, query-handlers.ts) get them as a StorageContext. The decisions are in
// policy.ts.
import type * as grpc from '@grpc/grpc-js';
import { Backoff } from '../common/backoff';
import { errorMessage } from '../common/errors';
import { ForegroundSlots } from '../common/foreground';
import { channelCredentials, connect, loadProto, stopGrpcServer, type Promised } from '../common/grpc';
import { HEALTH_PROBE_MS, type ServerHealth } from '../common/health';
import type { Logger } from '../common/log';
import {
  MetricsServer,
  TransferMetrics,
  newRegistry,
  operationMetrics,
  perScrape,
  sampled,
  serveMetrics,
} from '../common/metrics';
import { OperationRegistry } from '../common/operations';
import { startRoleServer } from '../common/role-server';
import { TaskQueue } from '../common/task-queue';
import type { StorageConfig } from '../config/storage';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import { WdevClient, type WdevStatusReply } from '../wdev/client';
import { backupHandlers } from './backup-handlers';
import { FullBackup } from './full-backup';
import { HashBackup } from './hash-backup';
import { ProxyMonitor } from './proxy-monitor';
import { queryHandlers } from './query-handlers';
import { volumeHandlers } from './volume-handlers';
import { StorageVolumeStore } from './volume-store';
import { hasLogTask, StorageVolumes, type Volume } from './volumes';
import { WlogShipper, pbsOf } from './wlog-shipping';

/** What the handlers work with. */
export interface StorageContext {
  readonly config: StorageConfig;
  readonly log: Logger;
  readonly volumes: StorageVolumes;
  readonly wdevd: WdevClient;
  readonly proxies: ProxyMonitor;
  readonly ops: OperationRegistry;
  readonly foreground: ForegroundSlots;
  /** One wlog task per volume (docs/servers.md §4.5). */
  readonly wlogTasks: TaskQueue<string>;
  readonly fullBackup: FullBackup;
  readonly hashBackup: HashBackup;
  /** `maxWlogSendMb` in physical blocks of a wdev. */
  maxSendPb(st: WdevStatusReply): number;
  /** Every delayed wlog task runs now, whatever its back-off. */
  retryAllNow(): void;
}

export class StorageServer {
  private readonly volumes = new StorageVolumes();
  private readonly ops = new OperationRegistry();
  private readonly wlogTasks: TaskQueue<string>;
  private readonly wdevd: WdevClient;
  private readonly proxies: ProxyMonitor;
  private readonly archiveClient: Promised<ArchiveClient>;
  private readonly backoff: Backoff<string>;
  private readonly shipper: WlogShipper;
  private readonly fullBackup: FullBackup;
  private readonly hashBackup: HashBackup;
  private readonly foreground: ForegroundSlots;
  private readonly registry = newRegistry();
  private metrics: MetricsServer | undefined;
  private server: grpc.Server | undefined;
  private health: ServerHealth | undefined;
  private ticker: NodeJS.Timeout | undefined;
  port = 0;

  constructor(
    readonly config: StorageConfig,
    private readonly log: Logger,
  ) {
    this.wdevd = new WdevClient(config.wdevdSocket, 30_000);
    this.proxies = new ProxyMonitor(
      config.proxies,
      {
        intervalMs: config.proxyHeartbeatSec * 1000,
        timeoutMs: config.proxyHeartbeatTimeoutSec * 1000,
        credentials: channelCredentials(config.tls),
      },
      log,
      () => this.retryAllNow(),
    );
    this.archiveClient = connect(
      loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive,
      config.archive,
      channelCredentials(config.tls),
    );
    this.foreground = new ForegroundSlots(config.maxForegroundTasks);
    this.backoff = new Backoff(config.retryDelaySec * 1000, config.maxRetryDelaySec * 1000);
    this.shipper = new WlogShipper(
      config,
      log,
      this.wdevd,
      this.proxies,
      this.volumes,
      this.backoff,
      new TransferMetrics(this.registry, 'walb_wlog_transfer', 'wlog transfers to a proxy', ['volume']),
    );
    this.sampleMetrics();
    this.wlogTasks = new TaskQueue<string>(
      Math.max(1, config.backgroundTasks),
      (v) => this.shipper.task(v),
      (v, err) => {
        const next = this.backoff.next(v);
        this.log('warn', 'wlog-send-failed', { volume: v, error: errorMessage(err), retryInMs: next });
        return next;
      },
    );
    const ship = (v: string) => this.wlogTasks.pushForce(v, 0);
    const backup = { config, log, wdevd: this.wdevd, archive: this.archiveClient, ship };
    this.fullBackup = new FullBackup(backup);
    this.hashBackup = new HashBackup(backup);
  }

  async start(): Promise<void> {
    for (const store of await StorageVolumeStore.loadAll(this.config.dataDir)) {
      const v = this.volumes.open(store, store.state);
      this.volumes.add(v);
      if (hasLogTask(v)) this.wlogTasks.push(store.volume);
    }
    // The driver would wake us through sysfs; walb-wdevd is polled once a second instead.
    this.ticker = setInterval(() => {
      for (const v of this.volumes.all()) if (hasLogTask(v)) this.wlogTasks.push(v.name, 0);
    }, 1000);
    this.ticker.unref();
    this.proxies.start();
    const ctx = this.context();
    const { server, port, health } = await startRoleServer(
      this.config.listen,
      'Storage',
      { ...volumeHandlers(ctx), ...backupHandlers(ctx), ...queryHandlers(ctx) },
      this.ops,
      this.config.tls,
    );
    this.server = server;
    this.port = port;
    this.health = health;
    health.probe('walb.v1.Storage', HEALTH_PROBE_MS, () => this.anyOverflow(), this.log);
    this.metrics = await serveMetrics(this.config, this.registry);
    health.serving();
    this.log('info', 'started', {
      listen: this.config.listen,
      port,
      metrics: this.metrics?.address ?? 'off',
      archive: this.config.archive,
      proxies: this.config.proxies,
    });
  }

  /** Whether the log of a volume's wdev overflowed (its volume needs a reset and a new backup). */
  private async anyOverflow(): Promise<boolean> {
    for (const v of this.volumes.all()) {
      const st = await this.wdevd.status(v.store.wdev).catch(() => undefined);
      if (st?.overflow) return true;
    }
    return false;
  }

  async stop(): Promise<void> {
    this.health?.stopping();
    if (this.ticker) clearInterval(this.ticker);
    await this.wlogTasks.stop();
    if (this.server) await stopGrpcServer(this.server, 5000);
    await this.metrics?.close();
    this.wdevd.close();
    this.proxies.stop();
    this.archiveClient.close();
    this.log('info', 'stopped', {});
  }

  /** The metrics read at each scrape: the log of each volume's wdev and the volume's records. */
  private sampleMetrics(): void {
    const r = this.registry;
    operationMetrics(r, this.ops);
    const statuses = perScrape(async () => {
      const out: [Volume, WdevStatusReply][] = [];
      for (const v of this.volumes.all()) {
        const st = await this.wdevd.status(v.store.wdev).catch(() => undefined);
        if (st) out.push([v, st]);
      }
      return out;
    });
    const perVolume = (name: string, help: string, value: (st: WdevStatusReply, v: Volume) => number) =>
      sampled(r, 'gauge', name, help, ['volume'], async () =>
        (await statuses()).map(([v, st]) => [{ volume: v.name }, value(st, v)]),
      );
    perVolume(
      'walb_log_usage_bytes',
      "Bytes of the volume's log not freed yet (not shipped, or shipped and not freed).",
      (st) => st.logUsage * pbsOf(st),
    );
    perVolume(
      'walb_log_capacity_bytes',
      "Size of the ring buffer of the volume's log device.",
      (st) => st.logCapacity * pbsOf(st),
    );
    perVolume(
      'walb_log_overflow',
      "1 when the volume's log overflowed (a reset and a full or hash backup are needed), else 0.",
      (st) => (st.overflow ? 1 : 0),
    );
    perVolume('walb_log_latest_lsid', 'The lsid after the last logged write.', (st) => st.lsids?.latest ?? 0);
    perVolume('walb_log_oldest_lsid', 'The oldest lsid still in the log.', (st) => st.lsids?.oldest ?? 0);
    perVolume(
      'walb_log_permanent_lsid',
      'The lsid up to which the log is durable (shippable).',
      (st) => st.lsids?.permanent ?? 0,
    );
    perVolume(
      'walb_log_done_lsid',
      'The lsid up to which a proxy has acknowledged the log (the done record).',
      (_st, v) => v.store.records.done.lsid,
    );
  }

  private context(): StorageContext {
    return {
      config: this.config,
      log: this.log,
      volumes: this.volumes,
      wdevd: this.wdevd,
      proxies: this.proxies,
      ops: this.ops,
      foreground: this.foreground,
      wlogTasks: this.wlogTasks,
      fullBackup: this.fullBackup,
      hashBackup: this.hashBackup,
      maxSendPb: (st) => this.shipper.maxSendPb(st),
      retryAllNow: () => this.retryAllNow(),
    };
  }

  private retryAllNow(): void {
    this.backoff.clear();
    this.wlogTasks.kickAll();
    for (const v of this.volumes.all())
      if (v.state.state === 'Target' || v.state.state === 'Standby') this.wlogTasks.pushForce(v.name, 0);
  }
}
