// Which proxies a storage sends logs to (docs/servers.md §4.4, §7.1). All count as available at first. A
// transfer that cannot reach a proxy marks it unavailable, so that later transfers go straight to the next one
// instead of waiting on a dead host; a heartbeat brings it back: every second, the proxy due longest ago (an
// interval after its last check) is checked — a gRPC health check within the timeout: the proxy's service must be
// there and the server SERVING (not starting or stopping). The service's own status is not asked: it says
// NOT_SERVING while the proxy gave up on an archive, and such a proxy still takes wlogs. A kick makes every proxy
// due, and one that then fails its check is retried soon (policy afterHeartbeat) rather than an interval later.
// Senders walk the available proxies in priority order, so the preferred proxy is used again as soon as its
// heartbeat succeeds.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { errorMessage } from '../common/errors';
import { LOADER_OPTIONS, connect, loadProto, type Promised } from '../common/grpc';
import type { Logger } from '../common/log';
import type { ProtoGrpcType as ProxyProto } from '../generated/proxy';
import type { ProxyClient } from '../generated/walb/v1/Proxy';
import { KICK_RETRY_FIRST_MS, afterHeartbeat, heartbeatDue, proxyOrder } from './policy';

/** The one method of grpc.health.v1.Health used here (grpc-health-check ships no client type). */
interface HealthClient extends grpc.Client {
  Check(
    argument: { service: string },
    callback: grpc.requestCallback<{ status: string }>,
  ): grpc.ClientUnaryCall;
}

export interface ProxyState {
  address: string;
  available: boolean;
  /** Unix ms of the last heartbeat (0: never checked). */
  lastCheck: number;
  lastError: string;
}

/** What the monitor keeps of a proxy beyond what it lists. */
interface MonitoredProxy extends ProxyState {
  /** Unix ms when the heartbeat checks it next (0: at once). */
  nextCheck: number;
  /** The wait before the next retry of a kick that could not reach it (0: no kick pending). */
  kickRetryMs: number;
}

export class ProxyMonitor {
  private readonly states: MonitoredProxy[];
  private readonly clients: Promised<ProxyClient>[];
  private readonly proxyProto = loadProto<ProxyProto>('walb/v1/proxy.proto').proto;
  private readonly Health = (
    grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS)) as unknown as {
      grpc: {
        health: {
          v1: {
            Health: new (a: string, c: grpc.ChannelCredentials, o?: grpc.ChannelOptions) => HealthClient;
          };
        };
      };
    }
  ).grpc.health.v1.Health;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    addresses: string[],
    private readonly opts: { intervalMs: number; timeoutMs: number; credentials: grpc.ChannelCredentials },
    private readonly log: Logger,
    /** A proxy has become available again (the caller retries what waits for one). */
    private readonly onAvailable: () => void,
  ) {
    this.states = addresses.map((address) => ({
      address,
      available: true,
      lastCheck: 0,
      lastError: '',
      nextCheck: 0,
      kickRetryMs: 0,
    }));
    this.clients = addresses.map((a) => this.newClient(a));
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const c of this.clients) c.close();
  }

  /** Indices of the available proxies, in priority order. */
  available(): number[] {
    return proxyOrder(this.states);
  }

  client(i: number): Promised<ProxyClient> {
    return this.clients[i];
  }

  address(i: number): string {
    return this.states[i].address;
  }

  list(): ProxyState[] {
    return this.states.map(({ address, available, lastCheck, lastError }) => ({
      address,
      available,
      lastCheck,
      lastError,
    }));
  }

  /** A transfer (or a heartbeat) could not reach proxy i. */
  markDown(i: number, why: string): void {
    const s = this.states[i];
    if (s.available) this.log('warn', 'proxy-unavailable', { proxy: s.address, error: why });
    s.available = false;
    s.lastCheck = Date.now();
    s.lastError = why;
    Object.assign(s, afterHeartbeat(s, false, s.lastCheck, this.opts.intervalMs));
  }

  /**
   * Every proxy is due for a heartbeat, and one that fails it is retried soon; with none available, one is checked
   * at once (walb `kick`).
   */
  async kick(): Promise<void> {
    for (const s of this.states) {
      s.nextCheck = 0;
      s.kickRetryMs = KICK_RETRY_FIRST_MS;
    }
    if (this.available().length === 0) await this.tick();
  }

  private async tick(): Promise<void> {
    if (this.checking) return;
    const due = heartbeatDue(this.states, Date.now());
    if (due === undefined) return;
    this.checking = true;
    try {
      const s = this.states[due];
      const error = await this.check(s.address);
      if (error) {
        this.markDown(due, error);
        return;
      }
      s.lastCheck = Date.now();
      s.lastError = '';
      Object.assign(s, afterHeartbeat(s, true, s.lastCheck, this.opts.intervalMs));
      if (!s.available) {
        // A fresh channel: the old one may still be backing off from the failures.
        this.clients[due].close();
        this.clients[due] = this.newClient(s.address);
        this.log('info', 'proxy-available', { proxy: s.address });
        s.available = true;
        this.onAvailable();
      }
    } finally {
      this.checking = false;
    }
  }

  /** '' when the address answers as a serving proxy within the timeout, else why not. */
  private async check(address: string): Promise<string> {
    const client = connect(this.Health, address, this.opts.credentials, this.opts.timeoutMs);
    try {
      await client.Check({ service: 'walb.v1.Proxy' }); // NOT_FOUND when the address is no proxy
      return (await client.Check({ service: '' })).status === 'SERVING' ? '' : 'not serving';
    } catch (err) {
      return errorMessage(err);
    } finally {
      client.close();
    }
  }

  private newClient(address: string): Promised<ProxyClient> {
    return connect(this.proxyProto.walb.v1.Proxy, address, this.opts.credentials);
  }
}
