// sampledHistogram (docs/operations.md, "Metrics"): a histogram counted elsewhere, written at each scrape in
// Prometheus's text format as prom-client writes its own histograms.
import test from 'ava';
import { newRegistry, sampledHistogram, type HistogramSample } from '../../src/common/metrics';

test('a sampled histogram writes cumulative buckets, +Inf, sum and count of each label set read at the scrape', async (t) => {
  const registry = newRegistry();
  let samples: HistogramSample<'export'>[] = [
    [{ export: 'a' }, { bounds: [0.001, 0.01], counts: [2, 0, 3], sum: 0.5 }],
    [{ export: 'b' }, { bounds: [0.001, 0.01], counts: [0, 0, 0], sum: 0 }],
  ];
  sampledHistogram(registry, 'walb_test_seconds', 'A test.', () => samples);
  const text = await registry.metrics();
  t.regex(text, /^# TYPE walb_test_seconds histogram$/m);
  t.regex(text, /^walb_test_seconds_bucket\{le="0.001",export="a"\} 2$/m);
  t.regex(text, /^walb_test_seconds_bucket\{le="0.01",export="a"\} 2$/m);
  t.regex(text, /^walb_test_seconds_bucket\{le="\+Inf",export="a"\} 5$/m);
  t.regex(text, /^walb_test_seconds_sum\{export="a"\} 0.5$/m);
  t.regex(text, /^walb_test_seconds_count\{export="a"\} 5$/m);
  t.regex(text, /^walb_test_seconds_count\{export="b"\} 0$/m);

  samples = [[{ export: 'b' }, { bounds: [0.001, 0.01], counts: [1, 1, 0], sum: 0.006 }]];
  const later = await registry.metrics();
  t.notRegex(later, /export="a"/, 'a label set no longer read is gone');
  t.regex(later, /^walb_test_seconds_bucket\{le="0.01",export="b"\} 2$/m);
  t.regex(later, /^walb_test_seconds_count\{export="b"\} 2$/m);
});

test('a sampled histogram is also in the registry as JSON, with its buckets', async (t) => {
  const registry = newRegistry();
  sampledHistogram(registry, 'walb_test_seconds', 'A test.', () => [
    [{}, { bounds: [1], counts: [1, 1], sum: 3 }],
  ]);
  const json = (await registry.getMetricsAsJSON()).find((m) => m.name === 'walb_test_seconds');
  t.is(String(json?.type), 'histogram');
  t.deepEqual(
    json?.values.map((v) => [(v as { metricName?: string }).metricName, v.labels, v.value]),
    [
      ['walb_test_seconds_bucket', { le: 1 }, 1],
      ['walb_test_seconds_bucket', { le: '+Inf' }, 2],
      ['walb_test_seconds_sum', {}, 3],
      ['walb_test_seconds_count', {}, 2],
    ],
  );
});
