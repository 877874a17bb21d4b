// Prometheus metrics of a daemon (docs/operations.md, "Metrics"): one registry per daemon with the process's
// default metrics, served as text on GET /metrics by a small plaintext HTTP server. Gauges read the daemon's state
// when scraped (`sampled`); counters count what happens once and leaves no state behind (a transfer's bytes, a
// failure). The HTTP server has no TLS nor authentication, so it listens on loopback unless the config allows more.
import http from 'node:http';
import type net from 'node:net';
import client from 'prom-client';
import { WalbError, errorMessage } from './errors';
import type { OperationRegistry } from './operations';

export type Registry = client.Registry;
export type Counter<L extends string> = client.Counter<L>;

/** The metrics keys of every role's config. */
export interface MetricsConfig {
  /** HOST:PORT of GET /metrics; empty: no metrics. */
  metricsListen: string;
  /** Allow metricsListen off loopback. */
  metricsAllowRemote: boolean;
}

/** One value of a sampled metric: its labels and its value now. */
export type Sample<L extends string> = [labels: Record<L, string>, value: number];

/** A daemon's registry, with the default metrics of the process (CPU, memory, event loop, handles). */
export function newRegistry(): Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  return registry;
}

/** A counter of events that leave no state to read at a scrape. */
export function counter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
): Counter<L> {
  return new client.Counter({ name, help, labelNames, registers: [registry] });
}

/**
 * A gauge or counter whose values are read from the daemon's state at each scrape: `read` returns every labelled
 * value; label sets it no longer returns (a deleted volume) disappear.
 */
export function sampled<L extends string>(
  registry: Registry,
  type: 'gauge' | 'counter',
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Sample<L>[] | Promise<Sample<L>[]>,
): void {
  const Metric = type === 'gauge' ? client.Gauge : client.Counter;
  new Metric<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      const samples = await read();
      this.reset();
      for (const [labels, value] of samples)
        if (this instanceof client.Gauge) this.set(labels, value);
        else this.inc(labels, value);
    },
  });
}

/**
 * A histogram counted elsewhere (in C++), read at a scrape: the buckets' upper bounds, one count per bucket and a
 * last one above every bound (not cumulative), and the sum of what was observed.
 */
export interface HistogramValue {
  bounds: number[];
  counts: number[];
  sum: number;
}

/** One value of a sampled histogram: its labels and its buckets now. */
export type HistogramSample<L extends string> = [labels: Record<L, string>, value: HistogramValue];

/**
 * A histogram whose buckets are read from the daemon's state at each scrape (`sampled` for histograms): prom-client
 * only counts observations it makes itself, so this one is a collector of the registry's own shape that writes
 * the `_bucket` (cumulative, with `le`), `_sum` and `_count` series of each labelled value `read` returns.
 */
export function sampledHistogram<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  read: () => HistogramSample<L>[],
): void {
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    reset() {},
    get() {
      const values = read().flatMap(([labels, { bounds, counts, sum }]) => {
        let below = 0;
        const buckets = counts.map((n, i) => {
          below += n;
          return {
            metricName: `${name}_bucket`,
            labels: { le: bounds[i] ?? '+Inf', ...labels },
            value: below,
          };
        });
        return [
          ...buckets,
          { metricName: `${name}_sum`, labels, value: sum },
          { metricName: `${name}_count`, labels, value: below },
        ];
      });
      return Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values });
    },
  };
  // The registry reads a metric only through get() (and reset() on resetMetrics()).
  registry.registerMetric(metric as unknown as client.Histogram<L>);
}

/**
 * `fn` shared by the metrics of one scrape: prom-client asks every metric at once, so the gauges that read the
 * same state wait for one read in flight (one call to walb-wdevd per volume, not one per gauge); once it has
 * settled, the next scrape reads again.
 */
export function perScrape<T>(fn: () => Promise<T>): () => Promise<T> {
  let reading: Promise<T> | undefined;
  return () =>
    (reading ??= fn().finally(() => {
      reading = undefined;
    }));
}

/** Operations of walb.v1.Operations (docs/servers.md §3.5): started and finished by kind and outcome, running. */
export function operationMetrics(registry: Registry, ops: OperationRegistry): void {
  const tallies = () => ops.tallies();
  sampled(registry, 'counter', 'walb_operations_started_total', 'Operations started.', ['kind'], () =>
    tallies().map((o) => [{ kind: o.kind }, o.started]),
  );
  sampled(
    registry,
    'counter',
    'walb_operations_finished_total',
    'Operations finished, by outcome (done, failed, cancelled).',
    ['kind', 'outcome'],
    () =>
      tallies().flatMap((o) =>
        o.finished.map(([outcome, n]): Sample<'kind' | 'outcome'> => [{ kind: o.kind, outcome }, n]),
      ),
  );
  sampled(registry, 'gauge', 'walb_operations_running', 'Operations running now.', ['kind'], () => {
    const running = new Map<string, number>();
    for (const { kind = '' } of ops.list()) running.set(kind, (running.get(kind) ?? 0) + 1);
    return [...running].map(([kind, n]) => [{ kind }, n]);
  });
}

/** The transfers of one kind a sender makes: bytes and durations of the acknowledged ones, failures by reason. */
export class TransferMetrics<L extends string> {
  private readonly bytes: client.Counter<L>;
  private readonly duration: client.Histogram<L>;
  private readonly failures: client.Counter<L | 'reason'>;

  /** Metrics `<prefix>_bytes_total`, `<prefix>_duration_seconds` and `<prefix>_failures_total`. */
  constructor(registry: Registry, prefix: string, what: string, labelNames: readonly L[]) {
    this.bytes = counter(
      registry,
      `${prefix}_bytes_total`,
      `Bytes of ${what} acknowledged by the receiver.`,
      labelNames,
    );
    this.duration = new client.Histogram({
      name: `${prefix}_duration_seconds`,
      help: `Duration of ${what} acknowledged by the receiver, from the header to the acknowledgement.`,
      labelNames,
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      registers: [registry],
    });
    this.failures = counter(
      registry,
      `${prefix}_failures_total`,
      `${what} that failed: the receiver's rejection reason, else the error code.`,
      [...labelNames, 'reason'],
    );
  }

  done(labels: Record<L, string>, bytes: number, startedMs: number): void {
    this.bytes.inc(labels, bytes);
    this.duration.observe(labels, (Date.now() - startedMs) / 1000);
  }

  failed(labels: Record<L, string>, reason: string): void {
    this.failures.inc({ ...labels, reason } as Record<L | 'reason', string>);
  }
}

/** Whether HOST of HOST:PORT is a loopback address (the name localhost, or 127.0.0.0/8). */
export function isLoopback(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':'));
  return host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The metrics listener's config: plaintext HTTP off loopback only when `metricsAllowRemote` says so. */
export function checkMetricsListen(c: MetricsConfig): void {
  if (c.metricsListen && !isLoopback(c.metricsListen) && !c.metricsAllowRemote)
    throw new WalbError(
      'CONFIG',
      `metricsListen: ${c.metricsListen} is not a loopback address; metrics are plaintext HTTP without ` +
        'authentication, so set metricsAllowRemote to true to serve them there',
    );
}

/** The HTTP server of GET /metrics. */
export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    /** HOST:PORT it listens on (the port the system picked for port 0). */
    readonly address: string,
  ) {}

  static async start(c: MetricsConfig, registry: Registry): Promise<MetricsServer> {
    checkMetricsListen(c);
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at GET /metrics\n');
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) =>
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${errorMessage(err)}\n`),
      );
    });
    const i = c.metricsListen.lastIndexOf(':');
    const host = c.metricsListen.slice(0, i);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new WalbError('CONFIG', `metricsListen: cannot listen on ${c.metricsListen}: ${errorMessage(err)}`),
        ),
      );
      server.listen(Number(c.metricsListen.slice(i + 1)), host, () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    return new MetricsServer(server, `${host}:${port}`);
  }

  /** Stops listening and ends the connections still open (a scraper keeps its connection alive). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Starts the metrics server when `metricsListen` is set; undefined when it is off. */
export function serveMetrics(c: MetricsConfig, registry: Registry): Promise<MetricsServer | undefined> {
  return c.metricsListen ? MetricsServer.start(c, registry) : Promise.resolve(undefined);
}
