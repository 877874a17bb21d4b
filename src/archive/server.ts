// walb-archive (docs/servers.md §6): the server that receives full backups from storages and wdiffs from proxies,
// keeps the restorable snapshots, restores them into image files, exports them over NBD and replicates volumes to
// other archives. This module only wires: it owns the config,
// the volumes (context.ts), the operations, the foreground limit and the bulk receiver, starts and stops the gRPC
// server and the maintenance worker (maintenance-worker.ts), and hands them to the handlers (lifecycle-, query-, restore-, transfer-handlers.ts, replication.ts). Decisions are in
// policy.ts, files in volume-store.ts.
import type * as grpc from '@grpc/grpc-js';
import { WalbError, errorMessage } from '../common/errors';
import { ForegroundSlots } from '../common/foreground';
import { stopGrpcServer, tlsPem, withPort } from '../common/grpc';
import type { ServerHealth } from '../common/health';
import type { Logger } from '../common/log';
import {
  MetricsServer,
  counter,
  newRegistry,
  operationMetrics,
  sampled,
  serveMetrics,
  type Counter,
} from '../common/metrics';
import { OperationRegistry } from '../common/operations';
import { startRoleServer } from '../common/role-server';
import { FULL_SYNC_BULK } from '../common/transfer';
import type { ArchiveConfig } from '../config/archive';
import { native, type BulkReceiver } from '../native';
import { backupHandlers } from './backup-handlers';
import { ArchiveVolumes, type ArchiveContext } from './context';
import { exportHandlers } from './export-handlers';
import { ArchiveExports } from './exports';
import { lifecycleHandlers } from './lifecycle-handlers';
import { maintenanceHandlers } from './maintenance-handlers';
import { MaintenanceWorker } from './maintenance-worker';
import { restorableSnaps } from './policy';
import { queryHandlers } from './query-handlers';
import { replicationHandlers } from './replication';
import { restoreHandlers } from './restore-handlers';
import { transferHandlers } from './transfer-handlers';

export class ArchiveServer {
  private readonly volumes: ArchiveVolumes;
  private readonly ops = new OperationRegistry();
  private server: grpc.Server | undefined;
  private health: ServerHealth | undefined;
  /** Full-backup bytes arrive here, off the JS thread (docs/servers.md §7.4); undefined when off. */
  private bulk: BulkReceiver | undefined;
  private readonly foreground: ForegroundSlots;
  private readonly exports: ArchiveExports;
  private readonly registry = newRegistry();
  private readonly receivedBytes: Counter<'volume' | 'kind'>;
  private metrics: MetricsServer | undefined;
  private maintenance: MaintenanceWorker | undefined;
  port = 0;

  constructor(
    readonly config: ArchiveConfig,
    private readonly log: Logger,
  ) {
    this.foreground = new ForegroundSlots(config.maxForegroundTasks);
    this.volumes = new ArchiveVolumes(config.dataDir);
    this.exports = new ArchiveExports(config.export, log);
    this.receivedBytes = counter(
      this.registry,
      'walb_archive_received_bytes_total',
      'Bytes of transfers taken, by kind: full (full backup), hash (hash backup diff), wdiff (from a proxy).',
      ['volume', 'kind'],
    );
    this.sampleMetrics();
  }

  /** Loads every volume (recovering from a crash); an inconsistent one stops the start with its reason. */
  async start(): Promise<void> {
    await this.volumes.load();
    const ctx: ArchiveContext = {
      config: this.config,
      log: this.log,
      ops: this.ops,
      foreground: this.foreground,
      volumes: this.volumes,
      exports: this.exports,
      busy: (v) => [...v.state.runningActions(), ...this.exports.actions(v.state.volume)],
      bulk: () => this.bulk,
      received: (kind, volume, bytes) => this.receivedBytes.inc({ volume, kind }, bytes),
      maintenanceStatus: (volume) => this.maintenance?.status(volume) ?? '',
    };
    const { server, port, health } = await startRoleServer(
      this.config.listen,
      'Archive',
      {
        ...lifecycleHandlers(ctx),
        ...queryHandlers(ctx),
        ...restoreHandlers(ctx),
        ...transferHandlers(ctx),
        ...replicationHandlers(ctx),
        ...maintenanceHandlers(ctx),
        ...backupHandlers(ctx),
        ...exportHandlers(ctx),
      },
      this.ops,
      this.config.tls,
    );
    this.server = server;
    this.port = port;
    this.health = health;
    this.bulk = this.startBulkReceiver();
    await this.exports.listen();
    this.metrics = await serveMetrics(this.config, this.registry);
    this.maintenance = new MaintenanceWorker(ctx);
    this.maintenance.start();
    health.serving();
    this.log('info', 'started', {
      listen: this.config.listen,
      port,
      metrics: this.metrics?.address ?? 'off',
      bulkPort: this.bulk?.port() ?? 'off',
      export: this.exports.addresses(),
      volumes: this.volumes.names(),
    });
  }

  /** The metrics read at each scrape: each volume's newest restorable snapshot and its diffs. */
  private sampleMetrics(): void {
    const r = this.registry;
    operationMetrics(r, this.ops);
    const stores = () =>
      this.volumes.all().flatMap((v) => (v.store ? [{ volume: v.state.volume, store: v.store }] : []));
    const newest = () =>
      stores().flatMap(({ volume, store }) => {
        const snap = restorableSnaps(store, false).at(-1);
        return snap ? [{ volume, timestamp: snap.timestamp }] : [];
      });
    sampled(
      r,
      'gauge',
      'walb_archive_recovery_point_age_seconds',
      'Age of the newest restorable snapshot of the volume (the recovery point): now minus its timestamp.',
      ['volume'],
      () => newest().map(({ volume, timestamp }) => [{ volume }, Math.max(0, Date.now() / 1000 - timestamp)]),
    );
    sampled(
      r,
      'gauge',
      'walb_archive_recovery_point_timestamp_seconds',
      'Unix time of the newest restorable snapshot of the volume.',
      ['volume'],
      () => newest().map(({ volume, timestamp }) => [{ volume }, timestamp]),
    );
    sampled(r, 'gauge', 'walb_archive_diffs', 'wdiffs kept for the volume.', ['volume'], () =>
      stores().map(({ volume, store }) => [{ volume }, store.diffs.all().length]),
    );
    sampled(
      r,
      'gauge',
      'walb_archive_diff_bytes',
      'Bytes of the wdiffs kept for the volume.',
      ['volume'],
      () =>
        stores().map(({ volume, store }) => [
          { volume },
          store.diffs.all().reduce((a, d) => a + d.dataSize, 0),
        ]),
    );
  }

  private startBulkReceiver(): BulkReceiver | undefined {
    const at = this.config.bulkListen;
    if (at === 'off') return undefined;
    const listen = at || withPort(this.config.listen, 0);
    try {
      return new native.BulkReceiver({ listen, method: FULL_SYNC_BULK, tls: tlsPem(this.config.tls) });
    } catch (err) {
      throw new WalbError('CONFIG', `bulkListen: cannot listen on ${listen}: ${errorMessage(err)}`);
    }
  }

  async stop(): Promise<void> {
    this.health?.stopping();
    await this.maintenance?.stop();
    if (this.server) await stopGrpcServer(this.server, 5000);
    await this.exports.close(5000);
    this.bulk?.close();
    this.bulk = undefined;
    await this.metrics?.close();
    this.log('info', 'stopped', {});
  }
}
