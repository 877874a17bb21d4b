// The status page of walbc serve-status (docs/operations.md, "Status page") without a group: every value escaped,
// fields rendered generically (a field walbc status gains shows up), running operations with their progress, the
// problems first, and its HTTP server (page, JSON, 404, the last reading served, loopback unless allowed).
import test from 'ava';
import { errorCode, errorMessage } from '../../src/common/errors';
import type { StatusRow } from '../../src/controller/controller';
import {
  StatusPageServer,
  escapeHtml,
  fieldLabel,
  renderStatusPage,
  type StatusReport,
} from '../../src/controller/status-page';

const GATHERED_MS = Date.UTC(2026, 0, 2, 3, 4, 5);

const storage: StatusRow = {
  server: 's0',
  role: 'storage',
  volume: 'vol0',
  state: 'Target',
  actions: ['FullSync'],
  operations: [
    { id: 'op-7', kind: 'FullSync', done: 1 << 20, total: 4 << 20, startedMs: GATHERED_MS - 9000 },
  ],
  storage: { doneGid: 7, queuedSnapshots: 1, logUsagePb: 25, logCapacityPb: 100, overflow: false },
};
const archive: StatusRow = {
  server: 'a0',
  role: 'archive',
  volume: 'vol0',
  state: 'Archived',
  actions: [],
  operations: [],
  archive: {
    latest: { gidB: 7, gidE: 7 },
    diffs: 3,
    diffBytes: 3 << 20,
    restored: [],
    newestRestorable: { gid: 7, timestamp: GATHERED_MS / 1000 - 75 },
    recoveryPointAgeSec: 75,
  },
};

function report(rows: StatusRow[], problems: string[] = []): StatusReport {
  return { ok: problems.length === 0, problems, rows, gatheredMs: GATHERED_MS };
}

test('every value on the page is escaped: a hostile name or error cannot add markup', (t) => {
  const hostile = '<img src=x onerror="alert(1)">&\'';
  const html = renderStatusPage(
    report(
      [{ ...storage, volume: hostile, server: hostile, error: hostile }],
      [`the log of ${hostile} on s0 overflowed`],
    ),
    5,
  );
  t.false(html.includes('<img'), 'no raw tag from a value');
  t.false(html.includes('"alert(1)"'));
  t.true(html.includes('&#60;img src=x onerror=&#34;alert(1)&#34;&#62;&#38;&#39;'));
  t.is(escapeHtml(`<>&"'`), '&#60;&#62;&#38;&#34;&#39;');
});

test('the problems come first, in the problems section, and the page title counts them', (t) => {
  const html = renderStatusPage(
    report([storage], ['the log of vol0 on s0 overflowed', 'p0 is unreachable']),
    5,
  );
  t.regex(html, /<title>walb-ts: 2 problem\(s\)<\/title>/);
  t.regex(
    html,
    /<section id="problems" class="bad"><h2>Needs an operator \(2\)<\/h2><ul><li>the log of vol0 on s0 overflowed<\/li><li>p0 is unreachable<\/li><\/ul><\/section><section class="volume" data-volume="vol0">/,
  );
  const fine = renderStatusPage(report([storage]), 5);
  t.regex(fine, /<section id="problems" class="fine"><h2>Nothing needs an operator<\/h2>/);
});

test('a row that needs an operator is marked; an unreachable server is listed under the servers that did not answer', (t) => {
  const overflow: StatusRow = { ...storage, storage: { ...storage.storage!, overflow: true } };
  const down: StatusRow = {
    server: 'p0',
    role: 'proxy',
    volume: '-',
    state: 'UNREACHABLE',
    actions: [],
    operations: [],
    error: 'no walb server answers at 127.0.0.1:1',
  };
  const html = renderStatusPage(report([overflow, down], ['x']), 5);
  t.regex(html, /<tr class="bad" data-server="s0">/);
  t.regex(html, /<dt>overflow<\/dt><dd><strong class="flag">YES<\/strong><\/dd>/);
  t.regex(html, /<h2>Servers that did not answer<\/h2>.*<td class="state">UNREACHABLE<\/td>/s);
  t.regex(html, /<dt>error<\/dt><dd class="flag">no walb server answers at 127\.0\.0\.1:1<\/dd>/);
});

test('facts are rendered in their units: log use as a meter, bytes, the recovery point and its age', (t) => {
  const html = renderStatusPage(report([storage, archive]), 5);
  t.regex(html, /<dt>log use<\/dt><dd><meter min="0" max="100" high="80" value="25"><\/meter> 25%<\/dd>/);
  t.regex(html, /<dt>log usage \(pb\)<\/dt><dd>25<\/dd>/);
  t.regex(html, /<dt>diff bytes<\/dt><dd>3\.00 MiB<\/dd>/);
  t.regex(html, /<dt>newest restorable<\/dt><dd>gid 7, timestamp 2026-01-02 03:02:50 UTC<\/dd>/);
  t.regex(html, /<dt>recovery point age<\/dt><dd>1m15s<\/dd>/);
  t.regex(html, /<dt>restored<\/dt><dd>none<\/dd>/);
});

test('a field the rows gain shows up without a change to the page (a per-archive lag on a proxy)', (t) => {
  const proxy = {
    server: 'p0',
    role: 'proxy',
    volume: 'vol0',
    state: 'Started',
    actions: [],
    operations: [],
    proxy: {
      archives: [
        { name: 'a0', pendingWdiffs: 2, pendingBytes: 2048, sendError: false, replicationLagSec: 3700 },
        { name: 'a1', pendingWdiffs: 0, pendingBytes: 0, sendError: true, replicationLagSec: 0 },
      ],
    },
  } as unknown as StatusRow;
  const html = renderStatusPage(report([proxy]), 5);
  t.regex(
    html,
    /<table class="inner"><tr><th>name<\/th><th>pending wdiffs<\/th><th>pending bytes<\/th><th>send error<\/th><th>replication lag<\/th><\/tr>/,
  );
  t.regex(html, /<tr><td>a0<\/td><td>2<\/td><td>2\.00 KiB<\/td><td>no<\/td><td>1h01m<\/td><\/tr>/);
  t.regex(
    html,
    /<td>a1<\/td><td>0<\/td><td>0 B<\/td><td><strong class="flag">YES<\/strong><\/td><td>0s<\/td>/,
  );
  t.is(fieldLabel('replicationLagSec'), 'replication lag');
});

test('a running operation shows its kind and progress, then the actions of the volume', (t) => {
  const html = renderStatusPage(report([{ ...storage, actions: ['FullSync', 'Wlog'] }]), 5);
  t.regex(
    html,
    /<div class="op">FullSync <progress max="100" value="25"><\/progress> 25% <small>op-7, since 2026-01-02 03:03:56 UTC<\/small><\/div><div>actions: FullSync, Wlog<\/div>/,
  );
  t.regex(renderStatusPage(report([archive]), 5), /<td class="state">Archived<\/td><td>-<\/td>/);
});

test('the page refreshes itself every interval with its inline script and loads nothing from elsewhere', (t) => {
  const html = renderStatusPage(report([storage]), 7);
  t.regex(html, /<body data-interval="7">/);
  t.regex(html, /<script>\(function\(\)\{/);
  t.notRegex(html, /(src|href)=/, 'no external asset');
});

function get(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  return fetch(url).then(async (r) => ({ status: r.status, headers: r.headers, body: await r.text() }));
}

test('the server answers the page and /status.json from the last reading, 404 elsewhere, and reads again every interval', async (t) => {
  let readings = 0;
  const page = await StatusPageServer.start(
    { listen: '127.0.0.1:0', allowRemote: false, intervalSec: 1 },
    () => {
      readings++;
      return Promise.resolve({ ...report([storage]), gatheredMs: GATHERED_MS + readings });
    },
  );
  try {
    t.regex(page.address, /^127\.0\.0\.1:\d+$/);
    const json = await get(`http://${page.address}/status.json`);
    t.is(json.status, 200);
    t.is(json.headers.get('content-type'), 'application/json');
    const body = JSON.parse(json.body) as StatusReport;
    t.deepEqual(body.rows, [storage]);
    t.true(body.ok);
    const html = await get(`http://${page.address}/`);
    t.is(html.status, 200);
    t.is(html.headers.get('content-type'), 'text/html; charset=utf-8');
    t.regex(
      html.headers.get('content-security-policy')!,
      /^default-src 'none'; style-src 'sha256-[^']+'; script-src 'sha256-[^']+'; connect-src 'self'$/,
    );
    t.regex(html.body, /data-volume="vol0"/);
    t.is((await get(`http://${page.address}/other`)).status, 404);
    const first = body.gatheredMs;
    await new Promise((r) => setTimeout(r, 2500));
    const later = JSON.parse((await get(`http://${page.address}/status.json`)).body) as StatusReport;
    t.true(later.gatheredMs > first, 'read again after an interval');
  } finally {
    await page.close();
  }
});

test("a reading that fails becomes the page's one problem", async (t) => {
  const page = await StatusPageServer.start(
    { listen: '127.0.0.1:0', allowRemote: false, intervalSec: 60 },
    () => Promise.reject(new Error('the layout went away')),
  );
  try {
    const body = JSON.parse((await get(`http://${page.address}/status.json`)).body) as StatusReport;
    t.false(body.ok);
    t.deepEqual(body.problems, ['the status could not be read: the layout went away']);
  } finally {
    await page.close();
  }
});

test('a listener off loopback is refused without --allow-remote, naming the option', async (t) => {
  const err = await t.throwsAsync(
    StatusPageServer.start({ listen: '0.0.0.0:0', allowRemote: false, intervalSec: 5 }, () =>
      Promise.resolve(report([])),
    ),
  );
  t.is(errorCode(err), 'USAGE');
  t.regex(errorMessage(err), /0\.0\.0\.0:0 is not a loopback address; .* give --allow-remote/);
  const bad = await t.throwsAsync(
    StatusPageServer.start({ listen: 'localhost', allowRemote: false, intervalSec: 5 }, () =>
      Promise.resolve(report([])),
    ),
  );
  t.regex(errorMessage(bad), /'localhost' is not HOST:PORT/);
});
