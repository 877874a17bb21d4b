// walb-wdevd's NBD request durations (docs/operations.md, "Metrics"): requests timed natively per export and
// command, scraped over HTTP as Prometheus does after a real NBD client (qemu-io) wrote and read.
import test from 'ava';
import { run } from '../processes';
import { freePort } from '../system-harness';
import { makeTempDir, removeDir } from '../temp-files';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const MiB = 1 << 20;
const HISTOGRAM = 'walb_nbd_request_duration_seconds';

/** Every sample of a scrape as `name{labels}` (labels sorted) to its value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m)
      out.set(
        key(
          m[1],
          Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]])),
        ),
        Number(m[3]),
      );
  }
  return out;
}

function key(name: string, labels: Record<string, string>): string {
  const l = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`);
  return `${name}{${l.join(',')}}`;
}

/** The cumulative buckets of one histogram series, by their `le` in increasing order. */
function buckets(s: Map<string, number>, labels: Record<string, string>): [le: string, count: number][] {
  const prefix = `${HISTOGRAM}_bucket{`;
  const out: [string, number][] = [];
  for (const [k, v] of s) {
    if (!k.startsWith(prefix)) continue;
    const le = /le="([^"]*)"/.exec(k)![1];
    if (k === key(`${HISTOGRAM}_bucket`, { ...labels, le })) out.push([le, v]);
  }
  return out.sort(([a], [b]) => Number(a) - Number(b));
}

test('NBD requests are timed per export and command: counts match what qemu-io sent and the buckets add up', async (t) => {
  const dir = makeTempDir('nbd-latency');
  const metrics = `127.0.0.1:${await freePort()}`;
  const d = new Wdevd(dir, ['--metrics-listen', metrics]);
  try {
    await d.start();
    for (const name of ['busy', 'idle'])
      await d.client.createWdev({
        ...(await makeWdevFiles(dir, name, { ldevBytes: 8 * MiB, ddevBytes: 16 * MiB })),
        name,
      });

    // Eight 64 KiB writes, a flush, then five 64 KiB reads, each its own NBD request.
    const writes = Array.from({ length: 8 }, (_, i) => ['-c', `write -P ${i + 1} ${i * 64}k 64k`]).flat();
    const w = await run('qemu-io', ['-f', 'raw', ...writes, '-c', 'flush', d.uri('busy')]);
    t.is(w.code, 0, w.stderr);
    const reads = Array.from({ length: 5 }, (_, i) => ['-c', `read -P ${i + 1} ${i * 64}k 64k`]).flat();
    const r = await run('qemu-io', ['-f', 'raw', ...reads, d.uri('busy')]);
    t.is(r.code, 0, r.stderr);
    t.notRegex(r.stdout, /Pattern verification failed/);

    const s = parse(await (await fetch(`http://${metrics}/metrics`)).text());
    const busy = { export: 'busy' };
    const count = (command: string) => s.get(key(`${HISTOGRAM}_count`, { ...busy, command }));
    t.is(count('WRITE'), 8);
    t.is(count('READ'), 5);
    t.true(count('FLUSH')! >= 1, 'the explicit flush (qemu-io may flush again when it closes)');
    t.is(count('TRIM'), 0);
    t.is(count('WRITE_ZEROES'), 0);
    // Every request taken but the two clients' NBD_CMD_DISC reached the device and was timed.
    const timed = ['READ', 'WRITE', 'FLUSH', 'TRIM', 'WRITE_ZEROES'].reduce((a, c) => a + count(c)!, 0);
    t.is(timed, s.get(key('walb_nbd_requests_total', busy))! - 2);
    t.is(s.get(key('walb_nbd_written_bytes_total', busy)), 8 * 64 * 1024);

    for (const command of ['READ', 'WRITE']) {
      const labels = { ...busy, command };
      const b = buckets(s, labels);
      t.is(b.length, 20, 'nineteen bounds from 10 µs to 10 s, and +Inf');
      t.deepEqual([b[0][0], b[18][0], b[19][0]], ['0.00001', '10', '+Inf']);
      for (let i = 1; i < b.length; i++) t.true(b[i][1] >= b[i - 1][1], `${command}: buckets are cumulative`);
      t.is(b[19][1], count(command)!, `${command}: +Inf holds every request`);
      const sum = s.get(key(`${HISTOGRAM}_sum`, labels))!;
      t.true(sum > 0 && sum < 60, `${command}: the sum (${sum} s) is of real, finite durations`);
      // The slowest request is at least the mean, so the smallest bucket holding all of them is above it.
      const allBelow = Number(b.find(([, n]) => n === count(command))![0]);
      t.true(
        allBelow >= sum / count(command)!,
        `${command}: bucket ${allBelow} s holds all, mean ${sum / count(command)!} s`,
      );
    }

    // The other export's series are there, at zero.
    for (const command of ['READ', 'WRITE', 'FLUSH'])
      t.is(s.get(key(`${HISTOGRAM}_count`, { export: 'idle', command })), 0);
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
});
