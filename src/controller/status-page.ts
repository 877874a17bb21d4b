// The status page of `walbc serve-status` (docs/operations.md, "Status page"): the group's state as `walbc status`
// gathers it (Controller.status, statusProblems), read again every interval in the background and served as one
// HTML page at / and as JSON at /status.json. Every request answers the last reading, so a crowd of browsers costs
// the servers nothing more. The page has no external assets: its style and a small script that re-reads the page
// itself every interval are inline and allowed by hash in the Content-Security-Policy, and every value is escaped.
// The rendering walks the rows' facts generically (labels from field names, units from name suffixes), so a field
// that `walbc status` gains shows up without a change here. Plaintext HTTP: loopback unless allowed (as metrics).
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { formatDuration } from '../common/cli';
import { WalbError, errorMessage } from '../common/errors';
import { isLoopback } from '../common/metrics';
import { formatBytes } from '../common/units';
import { statusProblems, type Controller, type StatusRow } from './controller';

/** What `walbc status --json` prints, and when it was read. */
export interface StatusReport {
  ok: boolean;
  problems: string[];
  rows: StatusRow[];
  /** Unix time in milliseconds of the reading. */
  gatheredMs: number;
}

/** Reads the group's state once, as `walbc status` does. */
export async function gatherStatus(c: Controller): Promise<StatusReport> {
  const rows = await c.status();
  const problems = statusProblems(rows);
  return { ok: problems.length === 0, problems, rows, gatheredMs: Date.now() };
}

/** Text made safe for HTML, in element content and in quoted attribute values alike. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const UNIT_WORDS: Record<string, string> = { sec: '', ms: '', pb: '(pb)' };

/** A field name as a label: recoveryPointAgeSec -> "recovery point age", logUsagePb -> "log usage (pb)". */
export function fieldLabel(name: string): string {
  return name
    .split(/(?=[A-Z])/)
    .map((w) => w.toLowerCase())
    .map((w) => UNIT_WORDS[w] ?? w)
    .filter((w) => w !== '')
    .join(' ');
}

function isoSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A scalar field's value as text, its unit taken from the field's name. */
function scalarText(name: string, v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'boolean') return v ? 'YES' : 'no';
  if (typeof v === 'number') {
    if (/Bytes$/.test(name)) return formatBytes(v);
    if (/Sec$/.test(name)) return formatDuration(v);
    if (/Ms$/.test(name)) return isoSeconds(v);
    if (name === 'timestamp') return isoSeconds(v * 1000);
  }
  return String(v);
}

type Field = string | number | boolean | null | undefined | Field[] | { [k: string]: Field };

/** Any field as HTML: scalars as text, objects as "label value" pairs, lists of objects as a small table. */
function fieldHtml(name: string, v: Field): string {
  if (Array.isArray(v)) {
    if (v.length === 0) return 'none';
    if (v.every((x) => x !== null && typeof x === 'object' && !Array.isArray(x)))
      return objectsTable(v as { [k: string]: Field }[]);
    return v.map((x) => fieldHtml(name, x)).join(', ');
  }
  if (v !== null && typeof v === 'object')
    return Object.entries(v)
      .map(([k, x]) => `${escapeHtml(fieldLabel(k))} ${fieldHtml(k, x)}`)
      .join(', ');
  const text = escapeHtml(scalarText(name, v));
  return v === true ? `<strong class="flag">${text}</strong>` : text;
}

function objectsTable(list: { [k: string]: Field }[]): string {
  const keys = [...new Set(list.flatMap((o) => Object.keys(o)))];
  const head = keys.map((k) => `<th>${escapeHtml(fieldLabel(k))}</th>`).join('');
  const body = list
    .map((o) => `<tr>${keys.map((k) => `<td>${fieldHtml(k, o[k])}</td>`).join('')}</tr>`)
    .join('');
  return `<table class="inner"><tr>${head}</tr>${body}</table>`;
}

/** The facts of a row as a definition list, with the log's use as a meter first when the row has a log. */
function factsHtml(r: StatusRow): string {
  const facts = (r.storage ?? r.proxy ?? r.archive ?? {}) as { [k: string]: Field };
  const items: string[] = [];
  const usage = facts.logUsagePb;
  const capacity = facts.logCapacityPb;
  if (typeof usage === 'number' && typeof capacity === 'number' && capacity > 0) {
    const pct = Math.round((100 * usage) / capacity);
    items.push(`<dt>log use</dt><dd><meter min="0" max="100" high="80" value="${pct}"></meter> ${pct}%</dd>`);
  }
  for (const [k, v] of Object.entries(facts))
    items.push(`<dt>${escapeHtml(fieldLabel(k))}</dt><dd>${fieldHtml(k, v)}</dd>`);
  if (r.error !== undefined) items.push(`<dt>error</dt><dd class="flag">${escapeHtml(r.error)}</dd>`);
  return `<dl>${items.join('')}</dl>`;
}

/** The operations running with their progress, then the volume's actions (the names its server gives them). */
function operationsHtml(r: StatusRow): string {
  const ops = r.operations.map((o) => {
    const pct = o.total > 0 ? Math.floor((100 * o.done) / o.total) : 0;
    const meter = o.total > 0 ? `<progress max="100" value="${pct}"></progress> ${pct}% ` : '';
    return (
      `<div class="op">${escapeHtml(o.kind)} ${meter}` +
      `<small>${escapeHtml(o.id)}, since ${escapeHtml(isoSeconds(o.startedMs))}</small></div>`
    );
  });
  if (r.actions.length > 0) ops.push(`<div>actions: ${escapeHtml(r.actions.join(', '))}</div>`);
  return ops.join('') || '-';
}

function rowHtml(r: StatusRow): string {
  const bad = statusProblems([r]).length > 0;
  return (
    `<tr class="${bad ? 'bad' : 'fine'}" data-server="${escapeHtml(r.server)}">` +
    `<td>${escapeHtml(r.server)}</td><td>${escapeHtml(r.role)}</td>` +
    `<td class="state">${escapeHtml(r.state)}</td><td>${operationsHtml(r)}</td><td>${factsHtml(r)}</td></tr>`
  );
}

function volumeHtml(volume: string, rows: StatusRow[]): string {
  // A server that did not answer has no volume to show ('-').
  const title = volume === '-' ? 'Servers that did not answer' : `Volume ${volume}`;
  return (
    `<section class="volume" data-volume="${escapeHtml(volume)}"><h2>${escapeHtml(title)}</h2>` +
    '<table><tr><th>server</th><th>role</th><th>state</th><th>running</th><th>facts</th></tr>' +
    `${rows.map(rowHtml).join('')}</table></section>`
  );
}

/** The <main> of the page: the problems first, then one table per volume. */
function mainHtml(report: StatusReport): string {
  const problems = report.ok
    ? '<section id="problems" class="fine"><h2>Nothing needs an operator</h2></section>'
    : `<section id="problems" class="bad"><h2>Needs an operator (${report.problems.length})</h2><ul>` +
      `${report.problems.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul></section>`;
  const byVolume = new Map<string, StatusRow[]>();
  for (const r of report.rows) byVolume.set(r.volume, [...(byVolume.get(r.volume) ?? []), r]);
  const volumes = [...byVolume].map(([v, rows]) => volumeHtml(v, rows)).join('');
  return (
    `<main><p>Read at <time>${escapeHtml(isoSeconds(report.gatheredMs))}</time>.</p>${problems}` +
    `${volumes || '<p>No server of the layout has a volume.</p>'}</main>`
  );
}

const STYLE = `body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
table.inner td,table.inner th{border-color:#e4e4e4;padding:.1em .4em}
dl{display:grid;grid-template-columns:auto 1fr;gap:.1em .8em;margin:0}dd{margin:0}
#problems{padding:.5em 1em;border-radius:4px;margin:1em 0}#problems.bad{background:#fdd;border:2px solid #c00}
#problems.fine{background:#dfd;border:1px solid #090}#problems h2{margin:.2em 0}
tr.bad td{background:#fee}.flag{color:#c00}#stale{background:#ffd;padding:.3em 1em}`;

/**
 * Every interval: read the page again and put its <main> in place of this one; when that fails, say so above
 * what the page showed last. The interval is the `data-interval` attribute of <body>.
 */
const SCRIPT = `(function(){
  var every = Number(document.body.dataset.interval) * 1000;
  var stale = document.getElementById('stale');
  function refresh() {
    fetch(location.pathname, { cache: 'no-store' })
      .then(function (res) { if (!res.ok) throw new Error('HTTP ' + res.status); return res.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html').querySelector('main');
        document.querySelector('main').replaceWith(fresh);
        stale.hidden = true;
      })
      .catch(function (err) {
        stale.textContent = 'The status server did not answer (' + err.message + '); this is the last reading.';
        stale.hidden = false;
      })
      .finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();`;

const cspHash = (text: string) => `'sha256-${crypto.createHash('sha256').update(text).digest('base64')}'`;
/** Nothing from elsewhere: the inline style and script by their hashes, fetch to this server only. */
const CSP = `default-src 'none'; style-src ${cspHash(STYLE)}; script-src ${cspHash(SCRIPT)}; connect-src 'self'`;

/** The whole page; `intervalSec` is how often it reads itself again. */
export function renderStatusPage(report: StatusReport, intervalSec: number): string {
  const title = report.ok ? 'walb-ts: all well' : `walb-ts: ${report.problems.length} problem(s)`;
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
    `<style>${STYLE}</style></head><body data-interval="${intervalSec}"><h1>walb-ts backup group</h1>` +
    `<p id="stale" hidden></p>${mainHtml(report)}<script>${SCRIPT}</script></body></html>\n`
  );
}

export interface StatusPageOptions {
  /** HOST:PORT (port 0: any free port). */
  listen: string;
  /** Serve off loopback: plaintext HTTP without authentication. */
  allowRemote: boolean;
  /** Seconds between two readings of the group, and between two refreshes of the page. */
  intervalSec: number;
}

/** The HTTP server of the status page, reading the group every interval with `gather`. */
export class StatusPageServer {
  private report: Promise<StatusReport>;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly server: http.Server,
    private readonly gather: () => Promise<StatusReport>,
    private readonly intervalSec: number,
  ) {
    this.report = this.read();
  }

  /** HOST:PORT it listens on (the port the system picked for port 0). */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  static async start(o: StatusPageOptions, gather: () => Promise<StatusReport>): Promise<StatusPageServer> {
    const i = o.listen.lastIndexOf(':');
    const port = Number(o.listen.slice(i + 1));
    if (i <= 0 || !/^\d{1,5}$/.test(o.listen.slice(i + 1)) || port > 65535)
      throw new WalbError('USAGE', `--listen: '${o.listen}' is not HOST:PORT`);
    if (!isLoopback(o.listen) && !o.allowRemote)
      throw new WalbError(
        'USAGE',
        `--listen: ${o.listen} is not a loopback address; the status page is plaintext HTTP without ` +
          'authentication, so give --allow-remote to serve it there',
      );
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new WalbError('UNAVAILABLE', `--listen: cannot listen on ${o.listen}: ${errorMessage(err)}`)),
      );
      server.listen(port, o.listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), () => resolve());
    });
    const page = new StatusPageServer(server, gather, o.intervalSec);
    server.on('request', (req, res) => page.answer(req, res));
    return page;
  }

  /** One reading; a failure becomes the report's one problem, so the page says why it has nothing. */
  private read(): Promise<StatusReport> {
    const reading = this.gather().catch((err: unknown): StatusReport => ({
      ok: false,
      problems: [`the status could not be read: ${errorMessage(err)}`],
      rows: [],
      gatheredMs: Date.now(),
    }));
    // The last reading stays served while the next one runs.
    void reading.then((r) => {
      this.report = Promise.resolve(r);
      if (!this.closed) this.timer = setTimeout(() => void this.read(), this.intervalSec * 1000);
    });
    return reading;
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = req.url?.split('?')[0];
    if (req.method !== 'GET' || (path !== '/' && path !== '/status.json')) {
      res
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end('the status page is at GET / and its data at GET /status.json\n');
      return;
    }
    void this.report.then((report) => {
      const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
      if (path === '/status.json')
        res
          .writeHead(200, { ...headers, 'content-type': 'application/json' })
          .end(`${JSON.stringify(report, null, 2)}\n`);
      else
        res
          .writeHead(200, {
            ...headers,
            'content-type': 'text/html; charset=utf-8',
            'content-security-policy': CSP,
          })
          .end(renderStatusPage(report, this.intervalSec));
    });
  }

  /** Stops reading the group and listening, and ends the connections still open. */
  close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
