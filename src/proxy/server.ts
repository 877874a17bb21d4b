// walb-proxy (docs/servers.md §5): receives wlogs from storages, keeps each as an indexed wdiff and forwards the
// wdiffs to every archive registered for the volume. This module wires it: it owns the configuration, the volumes,
// the sender, the operations and the foreground slots, loads the volumes at start (docs/servers.md §5.4), serves
// the handlers and stops it all. The pieces: policy.ts (decisions), volume-store.ts (files), volume.ts (a running volume),
// volume-handlers.ts and query-handlers.ts (commands), wlog-receiver.ts (wlogs in), wdiff-sender.ts (wdiffs out).
import type * as grpc from '@grpc/grpc-js';
import { ForegroundSlots } from '../common/foreground';
import { stopGrpcServer } from '../common/grpc';
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
import type { ProxyConfig } from '../config/proxy';
import { queryHandlers } from './query-handlers';
import { ProxyVolume } from './volume';
import { startVolume, volumeHandlers } from './volume-handlers';
import { ProxyVolumeStore } from './volume-store';
import { WdiffSender } from './wdiff-sender';
import { wlogReceiver } from './wlog-receiver';

/** What the handlers work with. */
export interface ProxyContext {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly volumes: Map<string, ProxyVolume>;
  readonly sender: WdiffSender;
  readonly ops: OperationRegistry;
  readonly foreground: ForegroundSlots;
}

export class ProxyServer implements ProxyContext {
  readonly volumes = new Map<string, ProxyVolume>();
  readonly ops = new OperationRegistry();
  readonly sender: WdiffSender;
  readonly foreground: ForegroundSlots;
  private readonly registry = newRegistry();
  private metrics: MetricsServer | undefined;
  private server: grpc.Server | undefined;
  private health: ServerHealth | undefined;
  port = 0;

  constructor(
    readonly config: ProxyConfig,
    readonly log: Logger,
  ) {
    this.foreground = new ForegroundSlots(config.maxForegroundTasks);
    this.sender = new WdiffSender(
      config,
      log,
      this.volumes,
      new TransferMetrics(this.registry, 'walb_wdiff_transfer', 'wdiff transfers to an archive', [
        'volume',
        'archive',
      ]),
    );
    this.sampleMetrics();
  }

  async start(): Promise<void> {
    for (const store of await ProxyVolumeStore.loadAll(this.config.dataDir)) {
      const v = new ProxyVolume(store, 'Stopped');
      this.volumes.set(v.name, v);
      if (this.config.startVolumes) await startVolume(this, v);
      else await v.recover(); // staged files are linked; the volume waits for `start`
    }
    const { server, port, health } = await startRoleServer(
      this.config.listen,
      'Proxy',
      { ...volumeHandlers(this), ...queryHandlers(this), SendWlog: wlogReceiver(this) },
      this.ops,
      this.config.tls,
    );
    this.server = server;
    this.port = port;
    this.health = health;
    // A proxy that gave up on an archive still takes wlogs; only its health says an operator is needed.
    health.probe(
      'walb.v1.Proxy',
      HEALTH_PROBE_MS,
      async () => [...this.volumes.values()].some((v) => v.sendError.size > 0),
      this.log,
    );
    this.metrics = await serveMetrics(this.config, this.registry);
    health.serving();
    this.log('info', 'started', {
      listen: this.config.listen,
      port,
      metrics: this.metrics?.address ?? 'off',
      volumes: [...this.volumes.keys()],
    });
  }

  async stop(): Promise<void> {
    this.health?.stopping();
    await this.sender.stop();
    if (this.server) await stopGrpcServer(this.server, 5000);
    await this.metrics?.close();
    this.log('info', 'stopped', {});
  }

  /** The metrics read at each scrape: each archive's queue of each volume and its give-up flag. */
  private sampleMetrics(): void {
    const r = this.registry;
    operationMetrics(r, this.ops);
    type Labels = { volume: string; archive: string };
    const queues = perScrape(async () => {
      const out: [Labels, { pendingWdiffs: number; pendingBytes: number }][] = [];
      for (const v of this.volumes.values())
        for (const a of v.store.archives) {
          const q = await v.store.queueStatus(a.name).catch(() => undefined);
          if (q) out.push([{ volume: v.name, archive: a.name }, q]);
        }
      return out;
    });
    sampled(
      r,
      'gauge',
      'walb_proxy_backlog_bytes',
      'Bytes of wdiffs waiting to be sent to the archive.',
      ['volume', 'archive'],
      async () => (await queues()).map(([labels, q]) => [labels, q.pendingBytes]),
    );
    sampled(
      r,
      'gauge',
      'walb_proxy_backlog_files',
      'wdiff files waiting to be sent to the archive.',
      ['volume', 'archive'],
      async () => (await queues()).map(([labels, q]) => [labels, q.pendingWdiffs]),
    );
    sampled(
      r,
      'gauge',
      'walb_proxy_send_error',
      '1 when the proxy gave up sending to the archive (wdiff-send-error; a kick or a new wlog resumes), else 0.',
      ['volume', 'archive'],
      () =>
        [...this.volumes.values()].flatMap((v) =>
          v.store.archives.map((a): [Labels, number] => [
            { volume: v.name, archive: a.name },
            v.sendError.has(a.name) ? 1 : 0,
          ]),
        ),
    );
  }
}
