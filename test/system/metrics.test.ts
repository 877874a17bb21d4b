// Prometheus metrics (docs/operations.md, "Metrics") scraped over HTTP from a running group, as Prometheus does,
// while the group works: the storage's log usage grows with writes through NBD and falls once they are shipped,
// the proxy's backlog, rejections and give-up flag while the archive's volume is stopped, the recovery point age
// growing then reset by a snapshot, the operation and transfer counters of a full backup, walb-wdevd's NBD
// counters, and an overflow.
import test from 'ava';
import crypto from 'node:crypto';
import { Group } from '../group-fixture';
import { P } from '../nbd-client';
import { waitUntil } from '../waiting';

/** The values of `name` in a scrape whose labels include `labels`. */
function values(text: string, name: string, labels: Record<string, string>): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) out.push(Number(m[3]));
  }
  return out;
}

/** The value of `name{labels}` in a scrape; undefined when it is not there. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return values(text, name, labels)[0];
}

/** The sum of `name` over every label set that includes `labels` (0 when there is none). */
function total(text: string, name: string, labels: Record<string, string>): number {
  return values(text, name, labels).reduce((a, v) => a + v, 0);
}

test.serial(
  'metrics move with the group: log usage, proxy backlog and give-up, recovery point age, operations, NBD counters, overflow',
  async (t) => {
    // A 4 MiB log overflows with a few MiB of writes while the proxy is down; a proxy gives up on an archive that
    // refuses for 1 s without new wlogs.
    const g = await Group.start(t, 'metrics', {
      metrics: true,
      ldevBytes: 4 << 20,
      proxyConfig: { retryTimeoutSec: 1 },
    });
    try {
      const { ok } = g;
      const vol = { volume: 'vol' };
      const toA0 = { volume: 'vol', archive: 'a0' };
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 10);

      // A full backup: the operation counters of the storage and the bytes the archive took.
      await ok('full-backup', 'vol', '--wait');
      let s0 = await g.scrape('s0');
      t.is(metric(s0, 'walb_operations_started_total', { kind: 'full-backup' }), 1);
      t.is(metric(s0, 'walb_operations_finished_total', { kind: 'full-backup', outcome: 'done' }), 1);
      t.is(metric(s0, 'walb_operations_running', { kind: 'full-backup' }), undefined);
      const capacity = metric(s0, 'walb_log_capacity_bytes', vol)!;
      t.true(
        capacity > 3 << 20 && capacity < 4 << 20,
        `the ring buffer (${capacity}) is most of the 4 MiB ldev`,
      );
      let a0 = await g.scrape('a0');
      t.true(metric(a0, 'walb_archive_received_bytes_total', { ...vol, kind: 'full' })! > 0);
      t.true(metric(a0, 'walb_archive_recovery_point_age_seconds', vol)! >= 0);
      const wdevd = await g.scrape('wdevd');
      t.true(metric(wdevd, 'walb_nbd_requests_total', { export: 'w0' })! >= 10);
      t.true(metric(wdevd, 'walb_nbd_written_bytes_total', { export: 'w0' })! >= 10 * 4096);
      t.is(metric(wdevd, 'walb_nbd_connections', { export: 'w0' }), 1);
      t.regex(wdevd, /^process_resident_memory_bytes \d/m);

      // Log usage grows with writes while nothing ships (the proxy is down), and falls once shipped.
      await waitUntil(
        async () => metric(await g.scrape('s0'), 'walb_log_usage_bytes', vol) === 0,
        'the log freed after the full backup',
      );
      await g.proxies[0].kill();
      await g.writeRandom(c, 8, 1 << 20);
      s0 = await g.scrape('s0');
      const grown = metric(s0, 'walb_log_usage_bytes', vol)!;
      t.true(grown >= 8 * 4096, `log usage ${grown} after 8 writes`);
      t.true(metric(s0, 'walb_log_latest_lsid', vol)! > metric(s0, 'walb_log_done_lsid', vol)!);
      t.is(metric(s0, 'walb_log_overflow', vol), 0);
      await waitUntil(
        async () => total(await g.scrape('s0'), 'walb_wlog_transfer_failures_total', vol) > 0,
        'a wlog transfer to the dead proxy counted as failed',
      );
      const shippedBefore = metric(s0, 'walb_wlog_transfer_bytes_total', vol) ?? 0;
      await g.proxies[0].start();
      await ok('kick-all');
      await waitUntil(
        async () => metric(await g.scrape('s0'), 'walb_log_usage_bytes', vol) === 0,
        'the log freed once shipped',
      );
      s0 = await g.scrape('s0');
      t.true(
        metric(s0, 'walb_wlog_transfer_bytes_total', vol)! >= shippedBefore + grown,
        'shipped bytes counted',
      );
      t.true(metric(s0, 'walb_wlog_transfer_duration_seconds_count', vol)! > 0);
      t.is(metric(s0, 'walb_log_done_lsid', vol), metric(s0, 'walb_log_latest_lsid', vol));
      t.is(metric(s0, 'walb_log_oldest_lsid', vol), metric(s0, 'walb_log_latest_lsid', vol));
      await ok('snapshot', 'vol', '--wait');

      // The archive's volume stopped: the proxy's backlog grows, the archive's refusals are counted, the proxy
      // gives up (send error), and the recovery point ages.
      await ok('stop', 'vol', 'a0', '--wait');
      const ageAtStop = metric(await g.scrape('a0'), 'walb_archive_recovery_point_age_seconds', vol)!;
      await g.writeRandom(c, 8);
      await waitUntil(async () => {
        const p0 = await g.scrape('p0');
        return (
          metric(p0, 'walb_proxy_backlog_bytes', toA0)! > 0 &&
          metric(p0, 'walb_proxy_backlog_files', toA0)! > 0 &&
          metric(p0, 'walb_wdiff_transfer_failures_total', { ...toA0, reason: 'STOPPED' })! > 0 &&
          metric(p0, 'walb_proxy_send_error', toA0) === 1
        );
      }, 'backlog, a STOPPED refusal and the give-up on the proxy');
      await waitUntil(
        async () =>
          metric(await g.scrape('a0'), 'walb_archive_recovery_point_age_seconds', vol)! >= ageAtStop + 2,
        'the recovery point ageing while the archive is stopped',
      );
      const agedTo = metric(await g.scrape('a0'), 'walb_archive_recovery_point_age_seconds', vol)!;

      // Started and kicked: the backlog goes to the archive, the flag goes; a snapshot resets the age.
      await ok('start', 'vol', 'a0');
      await ok('kick-all');
      await waitUntil(async () => {
        const p0 = await g.scrape('p0');
        return (
          metric(p0, 'walb_proxy_backlog_bytes', toA0) === 0 &&
          metric(p0, 'walb_proxy_backlog_files', toA0) === 0 &&
          metric(p0, 'walb_proxy_send_error', toA0) === 0
        );
      }, 'the backlog sent and the send error gone');
      t.true(metric(await g.scrape('p0'), 'walb_wdiff_transfer_bytes_total', toA0)! > 0);
      await ok('snapshot', 'vol', '--wait');
      a0 = await g.scrape('a0');
      const age = metric(a0, 'walb_archive_recovery_point_age_seconds', vol)!;
      t.true(age < agedTo && age < 10, `recovery point age ${age} s after the snapshot (was ${agedTo} s)`);
      t.true(metric(a0, 'walb_archive_recovery_point_timestamp_seconds', vol)! > Date.now() / 1000 - 10);
      t.true(metric(a0, 'walb_archive_received_bytes_total', { ...vol, kind: 'wdiff' })! > 0);
      t.true(metric(a0, 'walb_archive_diffs', vol)! > 0);
      t.true(metric(a0, 'walb_archive_diff_bytes', vol)! > 0);
      t.true(metric(a0, 'walb_operations_finished_total', { kind: 'stop', outcome: 'done' })! >= 1);

      // The proxy down again and more than the log's size written: the overflow shows.
      await g.proxies[0].kill();
      for (let i = 0; i < 8; i++) t.is(await c.writeAt(i + 1, i << 20, crypto.randomBytes(1 << 20)), 0);
      t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
      await waitUntil(
        async () => metric(await g.scrape('s0'), 'walb_log_overflow', vol) === 1,
        'walb_log_overflow 1',
      );
    } finally {
      await g.cleanup();
    }
  },
);
