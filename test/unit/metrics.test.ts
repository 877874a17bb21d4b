// The metrics module (docs/operations.md, "Metrics"): a registry with the process's default metrics, gauges read
// at scrape time, operation and transfer counters in Prometheus's text format, the HTTP server of GET /metrics, and
// the refusal of a plaintext listener off loopback unless the config allows it.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { errorCode, errorMessage } from '../../src/common/errors';
import {
  MetricsServer,
  TransferMetrics,
  checkMetricsListen,
  isLoopback,
  newRegistry,
  operationMetrics,
  perScrape,
  sampled,
  type Sample,
} from '../../src/common/metrics';
import { OperationRegistry } from '../../src/common/operations';
import { loadProxyConfig } from '../../src/config/proxy';
import { loadWdevdConfig } from '../../src/config/wdevd';
import { ROOT } from '../processes';

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
        );
      })
      .on('error', reject);
  });
}

test('a registry has the default process metrics and the sampled values of the moment in the text format', async (t) => {
  const registry = newRegistry();
  let samples: Sample<'volume'>[] = [
    [{ volume: 'a' }, 10],
    [{ volume: 'b' }, 20],
  ];
  sampled(registry, 'gauge', 'walb_test_bytes', 'Bytes of a test.', ['volume'], () => samples);
  const text = await registry.metrics();
  t.regex(text, /^process_cpu_user_seconds_total \d/m);
  t.regex(text, /^nodejs_heap_size_used_bytes \d/m);
  t.regex(text, /^# TYPE walb_test_bytes gauge$/m);
  t.regex(text, /^walb_test_bytes\{volume="a"\} 10$/m);
  t.regex(text, /^walb_test_bytes\{volume="b"\} 20$/m);
  samples = [[{ volume: 'b' }, 5]];
  const later = await registry.metrics();
  t.notRegex(later, /volume="a"/, 'a label set no longer read is gone');
  t.regex(later, /^walb_test_bytes\{volume="b"\} 5$/m);
});

test('perScrape shares one read among the gauges of a scrape and reads again at the next scrape', async (t) => {
  let reads = 0;
  const read = perScrape(async () => ++reads);
  const registry = newRegistry();
  for (const name of ['walb_test_a', 'walb_test_b'])
    sampled(registry, 'gauge', name, 'A test.', [], async () => [[{}, await read()]]);
  const first = await registry.metrics();
  t.regex(first, /^walb_test_a 1$/m);
  t.regex(first, /^walb_test_b 1$/m);
  t.regex(await registry.metrics(), /^walb_test_b 2$/m, 'a new scrape reads the state of now');
  t.is(reads, 2);
});

test('operation counters count started, finished by outcome, and running operations by kind', async (t) => {
  const registry = newRegistry();
  const ops = new OperationRegistry();
  operationMetrics(registry, ops);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const done = ops.start('FullBackup', 'v', async () => undefined);
  const failed = ops.start('FullBackup', 'v', async () => {
    throw new Error('boom');
  });
  const running = ops.start('HashBackup', 'v', () => held);
  await ops.wait(done.id!);
  await ops.wait(failed.id!);
  const text = await registry.metrics();
  t.regex(text, /^walb_operations_started_total\{kind="FullBackup"\} 2$/m);
  t.regex(text, /^walb_operations_started_total\{kind="HashBackup"\} 1$/m);
  t.regex(text, /^walb_operations_finished_total\{kind="FullBackup",outcome="done"\} 1$/m);
  t.regex(text, /^walb_operations_finished_total\{kind="FullBackup",outcome="failed"\} 1$/m);
  t.regex(text, /^walb_operations_running\{kind="HashBackup"\} 1$/m);
  release();
  await ops.wait(running.id!);
  const after = await registry.metrics();
  t.regex(after, /^walb_operations_finished_total\{kind="HashBackup",outcome="done"\} 1$/m);
  t.notRegex(after, /^walb_operations_running\{/m);
});

test('transfer metrics count acknowledged bytes, observe durations and count failures by reason', async (t) => {
  const registry = newRegistry();
  const m = new TransferMetrics(registry, 'walb_test_transfer', 'test transfers', ['volume']);
  m.done({ volume: 'v' }, 4096, Date.now() - 20);
  m.failed({ volume: 'v' }, 'BUSY');
  m.failed({ volume: 'v' }, 'BUSY');
  m.failed({ volume: 'v' }, 'UNAVAILABLE');
  const text = await registry.metrics();
  t.regex(text, /^walb_test_transfer_bytes_total\{volume="v"\} 4096$/m);
  t.regex(text, /^walb_test_transfer_duration_seconds_count\{volume="v"\} 1$/m);
  t.regex(text, /^walb_test_transfer_duration_seconds_bucket\{le="0.01",volume="v"\} 0$/m);
  t.regex(text, /^walb_test_transfer_duration_seconds_bucket\{le="0.05",volume="v"\} 1$/m);
  t.regex(text, /^walb_test_transfer_failures_total\{volume="v",reason="BUSY"\} 2$/m);
  t.regex(text, /^walb_test_transfer_failures_total\{volume="v",reason="UNAVAILABLE"\} 1$/m);
});

test('the server answers GET /metrics in the text format and 404 elsewhere, on the port the system picked', async (t) => {
  const registry = newRegistry();
  sampled(registry, 'gauge', 'walb_test_up', 'Always 1.', [], () => [[{}, 1]]);
  const server = await MetricsServer.start(
    { metricsListen: '127.0.0.1:0', metricsAllowRemote: false },
    registry,
  );
  try {
    t.regex(server.address, /^127\.0\.0\.1:[1-9]\d*$/);
    const r = await get(`http://${server.address}/metrics`);
    t.is(r.status, 200);
    t.regex(r.type, /^text\/plain; version=0\.0\.4/);
    t.regex(r.body, /^walb_test_up 1$/m);
    t.is((await get(`http://${server.address}/`)).status, 404);
  } finally {
    await server.close();
  }
  await t.throwsAsync(get(`http://${server.address}/metrics`), undefined, 'closed: nothing listens');
});

test('a plaintext metrics address off loopback is refused as CONFIG unless metricsAllowRemote is set', async (t) => {
  t.true(isLoopback('127.0.0.1:9100'));
  t.true(isLoopback('127.1.2.3:9100'));
  t.true(isLoopback('localhost:9100'));
  t.false(isLoopback('0.0.0.0:9100'));
  t.false(isLoopback('10.0.0.5:9100'));
  t.false(isLoopback('metrics.example:9100'));
  for (const metricsListen of ['0.0.0.0:9100', '192.168.1.2:9100']) {
    const err = t.throws(() => checkMetricsListen({ metricsListen, metricsAllowRemote: false }));
    t.is(errorCode(err), 'CONFIG');
    t.regex(errorMessage(err), /metricsListen: .* is not a loopback address.*metricsAllowRemote/);
    t.notThrows(() => checkMetricsListen({ metricsListen, metricsAllowRemote: true }));
  }
  t.notThrows(() => checkMetricsListen({ metricsListen: '', metricsAllowRemote: false }), 'off');
  const started = MetricsServer.start(
    { metricsListen: '0.0.0.0:0', metricsAllowRemote: false },
    newRegistry(),
  );
  t.is(errorCode(await t.throwsAsync(started)), 'CONFIG', 'the server refuses it too');
  // The daemons' config loaders refuse it (the binaries exit with 2), --metrics-listen as the file.
  t.is(errorCode(t.throws(() => loadProxyConfig({ metricsListen: '0.0.0.0:9100' }))), 'CONFIG');
  t.is(errorCode(t.throws(() => loadWdevdConfig({ metricsListen: '0.0.0.0:9100' }))), 'CONFIG');
  t.is(loadProxyConfig({ metricsListen: '127.0.0.1:9100' }).metricsListen, '127.0.0.1:9100');
  t.is(loadProxyConfig({}).metricsListen, '', 'off by default');
});

test('the example alert rules file is the one in docs/operations.md and names only metrics listed there', (t) => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Metrics\n'), doc.indexOf('\n## Logs\n'));
  const listed = new Set([...section.matchAll(/^\| `(walb_\w+)` \|/gm)].map((m) => m[1]));
  const block = /```yaml\n([\s\S]*?)```/.exec(section)![1];
  const file = fs.readFileSync(path.join(ROOT, 'config', 'prometheus-alerts.example.yml'), 'utf8');
  t.is(file.slice(file.indexOf('\n') + 1), block);
  const used = [...block.matchAll(/\bwalb_\w+/g)].map((m) => m[0]);
  t.true(used.length >= 4);
  for (const name of used) t.true(listed.has(name), `${name} is not in the table of docs/operations.md`);
});
