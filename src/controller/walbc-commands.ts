// walbc: the operator's verbs over the backup group named in a layout file (config/layout.example.json).
import {
  intOpt,
  printJson,
  progressPrinter,
  stringOpt,
  usageError,
  type Command,
  type Options,
  type Values,
} from '../common/cli';
import { BACKUPS_HEADER, backupLine, verifyLine } from './backups';
import { Controller, loadLayout, restorableLine, statusDetail, statusProblems } from './controller';
import { standingLine } from './replicas';
import {
  classifyRecovery,
  findingText,
  gatherRecoverFacts,
  planRecovery,
  runPlan,
  stepCommand,
  stepLine,
  type Step,
} from './recover';
import { WalbError, isErrorCode } from '../common/errors';
import { parseSize } from '../common/units';
import { StatusPageServer, gatherStatus } from './status-page';

const common: Options = { layout: { type: 'string', short: 'l' }, json: { type: 'boolean' } };
const commonHelp = {
  layout: 'layout file (default /etc/walb/layout.json, or WALB_LAYOUT)',
  json: 'machine-readable output',
};
/** The value names of walbc's options in the help. */
const placeholders: Record<string, string> = {
  layout: 'FILE',
  storage: 'ID',
  proxy: 'ID',
  archive: 'ID',
  chunk: 'SIZE',
  gid: 'G',
  address: 'HOST:PORT',
  compression: 'CODEC[:LEVEL]',
  delay: 'SECONDS',
  volume: 'VOL',
  listen: 'HOST:PORT',
  interval: 'SECONDS',
  volumes: 'VOL,...',
  timeout: 'SECONDS',
  policy: 'auto|manual',
  wdev: 'WDEV',
  'max-bytes': 'N',
};

async function withController<T>(values: Values, fn: (c: Controller) => Promise<T>): Promise<T> {
  const file = stringOpt(values, 'layout') ?? process.env.WALB_LAYOUT ?? '/etc/walb/layout.json';
  const c = new Controller(loadLayout(file));
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

function gidArg(s: string): number {
  if (!/^\d+$/.test(s)) throw usageError(`'${s}' is not a gid`);
  return Number(s);
}

function out(values: Values, json: unknown, text: string): void {
  if (values.json) printJson(json);
  else process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** On a terminal: the operation's progress with bytes, rate and ETA (a stop counts in its own unit). */
function progress(values: Values) {
  if (values.json || !process.stderr.isTTY) return undefined;
  let printer: ReturnType<typeof progressPrinter> | undefined;
  return (op: { done: number; total: number; kind: string }) => {
    printer ??= progressPrinter(op.kind, false, op.kind === 'stop' ? 'count' : 'bytes');
    if (op.total) printer.fn(Number(op.done), Number(op.total));
  };
}

/** Help for --storage/--proxy/--archive, which name the server a volume verb goes to. */
function serverHelp(options: Options): Record<string, string> {
  const help: Record<string, string> = {};
  for (const role of ['storage', 'proxy', 'archive'])
    if (role in options) help[role] = `the ${role} to use (layout id; default: the first of the layout)`;
  return help;
}

function cmd(
  name: string,
  args: string,
  summary: string,
  n: [number, number],
  run: (c: Controller, a: string[], v: Values) => Promise<void>,
  extra: Options = {},
  extraHelp: Record<string, string> = {},
): Command {
  return {
    name,
    args,
    summary,
    options: { ...common, ...extra },
    optionHelp: { ...commonHelp, ...serverHelp(extra), ...extraHelp },
    placeholders,
    minArgs: n[0],
    maxArgs: n[1],
    run: (a, v) => withController(v, (c) => run(c, a, v)),
  };
}

/** After a backup: the secondaries it stopped synchronizing, and how to make each synchronizing again. */
function resyncNote(c: Controller, volume: string, archives: string[]): string {
  return archives
    .map(
      (a) =>
        `\nnote: ${a} stopped synchronizing ${volume} (a backup starts a new history); to synchronize it again: ` +
        `walbc replicate ${volume} ${c.primaryArchive} ${a} --sync`,
    )
    .join('');
}

const wait: Options = { wait: { type: 'boolean', short: 'w' } };
const waitHelp = { wait: 'wait until done (a progress line on a terminal)' };
const on = (role: string): Options => ({ [role]: { type: 'string' } });

/** walbc verify and restore --test: waits for the archive's Verify and prints the hash (exit 1 when it failed). */
async function verify(c: Controller, a: string[], v: Values): Promise<void> {
  const gid = gidArg(a[1]);
  const op = await c.verify(a[0], gid, {
    archive: stringOpt(v, 'archive'),
    progress: progress(v),
  });
  out(v, { volume: a[0], gid, hash: op.result }, verifyLine(a[0], gid, op.result));
}

export const walbcCommands: Command[] = [
  cmd(
    'init-vol',
    'VOL WDEV',
    'register a volume: the storage on a wdev, every archive, every proxy',
    [2, 2],
    async (c, a, v) => {
      await c.initVolume(a[0], a[1], stringOpt(v, 'storage'));
      out(v, { volume: a[0] }, `volume ${a[0]} initialized on wdev ${a[1]}`);
    },
    on('storage'),
  ),
  cmd(
    'init-storage',
    'VOL WDEV',
    'register a volume on one storage only (the first of the layout, or --storage) and start it standby',
    [2, 2],
    async (c, a, v) => {
      await c.initStorage(a[0], a[1], stringOpt(v, 'storage'));
      out(v, { volume: a[0], state: 'Standby' }, `volume ${a[0]} initialized on wdev ${a[1]}, Standby`);
    },
    on('storage'),
  ),
  cmd(
    'go-standby',
    'VOL',
    'make a volume Standby on a storage: from Target stop force and reset-vol, from Stopped reset-vol',
    [1, 1],
    async (c, a, v) => {
      const was = await c.goStandby(a[0], stringOpt(v, 'storage'));
      out(
        v,
        { volume: a[0], was, state: 'Standby' },
        was === 'Standby' ? 'Standby already' : `${was} -> Standby`,
      );
    },
    on('storage'),
  ),
  cmd(
    'full-backup',
    'VOL',
    'full backup to the primary archive (with --wait: until its snapshot is restorable)',
    [1, 1],
    async (c, a, v) => {
      const r = await c.fullBackup(a[0], {
        storage: stringOpt(v, 'storage'),
        wait: v.wait === true,
        progress: progress(v),
      });
      out(
        v,
        r,
        (v.wait
          ? `\nfull backup of ${a[0]} done: gid ${r.gid} restorable`
          : `started: operation ${r.operation.id}`) + resyncNote(c, a[0], r.unsynchronized),
      );
    },
    { ...wait, ...on('storage') },
    waitHelp,
  ),
  cmd(
    'hash-backup',
    'VOL',
    'send only the chunks that differ from the primary archive (after an overflow or lost history)',
    [1, 1],
    async (c, a, v) => {
      const chunk = stringOpt(v, 'chunk');
      const r = await c.hashBackup(a[0], {
        storage: stringOpt(v, 'storage'),
        wait: v.wait === true,
        chunkSize: chunk === undefined ? undefined : parseSize(chunk, 'chunk size'),
        progress: progress(v),
      });
      out(
        v,
        r,
        (v.wait
          ? `\nhash backup of ${a[0]} done: gid ${r.gid} restorable`
          : `started: operation ${r.operation.id}`) + resyncNote(c, a[0], r.unsynchronized),
      );
    },
    { ...wait, ...on('storage'), chunk: { type: 'string' } },
    { ...waitHelp, chunk: 'bytes hashed and compared at a time (default 64k; up to 32M)' },
  ),
  cmd(
    'replicate',
    'VOL FROM TO',
    'replicate a volume from archive FROM to archive TO (inits TO if Clear, grows it if smaller)',
    [3, 3],
    async (c, a, v) => {
      const gid = stringOpt(v, 'gid');
      const sync = v.sync === true;
      const r = await c.replicate(a[0], a[1], a[2], {
        resync: v.resync === true,
        gid: gid === undefined ? undefined : gidArg(gid),
        dontMerge: v['dont-merge'] === true,
        wait: v.wait === true || sync,
        progress: progress(v),
      });
      if (sync) await c.startSynchronizing(a[0], a[2], { progress: progress(v) });
      out(
        v,
        { ...r, synchronizing: sync },
        v.wait || sync
          ? `\nreplication of ${a[0]} to ${a[2]} done: its latest gid is ${r.gid}` +
              (sync ? `; ${a[2]} is synchronizing ${a[0]}` : '')
          : `started: operation ${r.operation.id}`,
      );
    },
    {
      ...wait,
      sync: { type: 'boolean' },
      resync: { type: 'boolean' },
      gid: { type: 'string' },
      'dont-merge': { type: 'boolean' },
    },
    {
      ...waitHelp,
      sync: 'then make TO synchronizing (start-synchronizing; implies --wait)',
      resync: "replace TO's history when it differs (its diffs and restored images are dropped)",
      gid: "replicate until TO's latest snapshot reaches this gid (default: FROM's latest)",
      'dont-merge': 'send the diffs one file at a time, as they are',
    },
  ),
  cmd(
    'snapshot',
    'VOL',
    'take an explicit snapshot; prints its gid (with --wait: once restorable)',
    [1, 1],
    async (c, a, v) => {
      const gid = await c.snapshot(a[0], { storage: stringOpt(v, 'storage'), wait: v.wait === true });
      out(v, { gid }, String(gid));
    },
    { ...wait, ...on('storage') },
    waitHelp,
  ),
  cmd(
    'resize',
    'VOL SIZE',
    'grow a volume (e.g. 1G): every archive that has it, then every storage; grow the data devices first',
    [2, 2],
    async (c, a, v) => {
      const bytes = parseSize(a[1], 'SIZE');
      if (bytes <= 0 || bytes % 512 !== 0) throw usageError('SIZE must be a positive multiple of 512 bytes');
      const done = await c.resize(a[0], bytes / 512, { zeroClear: v['zero-clear'] === true });
      out(v, done, done.map((d) => `${d.server}: ${a[0]} is ${d.size} LB`).join('\n'));
    },
    { 'zero-clear': { type: 'boolean' } },
    { 'zero-clear': "write the archives' new area as zeros" },
  ),
  cmd(
    'restore',
    'VOL GID',
    'restore a snapshot into an image on the archive',
    [2, 2],
    async (c, a, v) => {
      if (v.test) return verify(c, a, v);
      const op = await c.restore(a[0], gidArg(a[1]), {
        archive: stringOpt(v, 'archive'),
        wait: v.wait === true,
        progress: progress(v),
      });
      out(v, op, v.wait ? `\n${op.result}` : `started: operation ${op.id}`);
    },
    { ...wait, ...on('archive'), test: { type: 'boolean' } },
    { ...waitHelp, test: 'a dry run: verify the snapshot (as walbc verify), no image written' },
  ),
  cmd(
    'apply',
    'VOL GID',
    "write the diffs up to snapshot GID into the archive's base image (older snapshots are no longer restorable)",
    [2, 2],
    async (c, a, v) => {
      const op = await c.apply(a[0], gidArg(a[1]), {
        archive: stringOpt(v, 'archive'),
        wait: v.wait === true,
        progress: progress(v),
      });
      out(v, op, v.wait ? `applied up to gid ${op.result}` : `started: operation ${op.id}`);
    },
    { ...wait, ...on('archive') },
    waitHelp,
  ),
  cmd(
    'merge',
    'VOL GIDB GIDE | VOL --max-bytes N',
    'merge the mergeable diffs from GIDB to GIDE into one (the snapshots between them are implicit), or by size',
    [1, 3],
    async (c, a, v) => {
      const size = stringOpt(v, 'max-bytes');
      if ((size === undefined) === (a.length === 1))
        throw usageError('merge takes either GIDB GIDE or --max-bytes N');
      if (a.length === 2) throw usageError('merge needs both GIDB and GIDE');
      const maxBytes = size === undefined ? 0 : parseSize(size, '--max-bytes');
      if (size !== undefined && maxBytes <= 0) throw usageError('--max-bytes must be above 0');
      const range = size === undefined ? { gidBegin: gidArg(a[1]), gidEnd: gidArg(a[2]) } : { maxBytes };
      const op = await c.merge(a[0], range, {
        archive: stringOpt(v, 'archive'),
        wait: v.wait === true,
        progress: progress(v),
      });
      out(v, op, v.wait ? `merged: ${op.result}` : `started: operation ${op.id}`);
    },
    { ...wait, ...on('archive'), 'max-bytes': { type: 'string' } },
    {
      ...waitHelp,
      'max-bytes':
        'merge every run of mergeable diffs from the oldest, each merged diff within N bytes (e.g. 64M)',
    },
  ),
  cmd(
    'gc-diff',
    'VOL',
    "delete the archive's wdiffs that no snapshot reaches",
    [1, 1],
    async (c, a, v) => {
      const collected = await c.gcDiff(a[0], stringOpt(v, 'archive'));
      out(v, { collected }, `${collected} wdiff(s) deleted`);
    },
    on('archive'),
  ),
  cmd(
    'disable-snapshot',
    'VOL GID...',
    'make snapshots implicit: hidden from get-restorable, mergeable',
    [2, Infinity],
    async (c, a, v) => {
      await c.setSnapshotExplicit(a[0], a.slice(1).map(gidArg), false, stringOpt(v, 'archive'));
      out(v, {}, 'disabled');
    },
    on('archive'),
  ),
  cmd(
    'enable-snapshot',
    'VOL GID...',
    'make snapshots explicit again',
    [2, Infinity],
    async (c, a, v) => {
      await c.setSnapshotExplicit(a[0], a.slice(1).map(gidArg), true, stringOpt(v, 'archive'));
      out(v, {}, 'enabled');
    },
    on('archive'),
  ),
  cmd(
    'del-restored',
    'VOL GID',
    'delete a restored image',
    [2, 2],
    async (c, a, v) => {
      await c.delRestored(a[0], gidArg(a[1]), stringOpt(v, 'archive'));
      out(v, {}, 'deleted');
    },
    on('archive'),
  ),
  cmd(
    'export',
    'VOL [GID]',
    'serve snapshot GID read-only over NBD from the archive, nothing restored (without GID: list the exports)',
    [1, 2],
    async (c, a, v) => {
      const archive = stringOpt(v, 'archive');
      if (a.length === 1) {
        const list = await c.listExports(a[0], archive);
        out(
          v,
          list,
          list.map((e) => `${e.gid}\t${e.connections} connection(s)\t${e.uris.join(' ')}`).join('\n'),
        );
        return;
      }
      const e = await c.exportSnapshot(a[0], gidArg(a[1]), archive);
      out(v, e, e.uris.join('\n'));
    },
    on('archive'),
  ),
  cmd(
    'unexport',
    'VOL GID',
    'stop serving an exported snapshot (its NBD clients are disconnected)',
    [2, 2],
    async (c, a, v) => {
      await c.unexportSnapshot(a[0], gidArg(a[1]), stringOpt(v, 'archive'));
      out(v, {}, 'unexported');
    },
    on('archive'),
  ),
  cmd(
    'get-restorable',
    'VOL',
    'restorable snapshots: gid, time (UTC), explicit',
    [1, 1],
    async (c, a, v) => {
      const list = await c.getRestorable(a[0], stringOpt(v, 'archive'), v.all === true);
      out(v, list, list.map(restorableLine).join('\n'));
    },
    { ...on('archive'), all: { type: 'boolean' } },
    { all: 'also the implicit snapshots' },
  ),
  cmd(
    'get-restored',
    'VOL',
    'restored snapshots on the archive',
    [1, 1],
    async (c, a, v) => {
      const gids = await c.getRestored(a[0], stringOpt(v, 'archive'));
      out(v, gids, gids.join('\n'));
    },
    on('archive'),
  ),
  // ---- backups list and verification (docs/servers.md §6.9) ----
  cmd(
    'backups',
    'VOL',
    'restorable snapshots: gid, time (UTC), explicit or implicit, wdiffs and bytes a restore reads, last verification',
    [1, 1],
    async (c, a, v) => {
      const rows = await c.backups(a[0], stringOpt(v, 'archive'));
      out(v, rows, [BACKUPS_HEADER, ...rows.map(backupLine)].join('\n'));
    },
    on('archive'),
  ),
  cmd(
    'verify',
    'VOL GID',
    'read a snapshot on the archive with every checksum checked (nothing written) and print its hash as walb-tool hash',
    [2, 2],
    verify,
    on('archive'),
  ),
  cmd(
    'status',
    '[VOL]',
    'one table for the whole group (or one volume); exit 1 when something needs an operator',
    [0, 1],
    async (c, a, v) => {
      const rows = await c.status(a[0]);
      const archives = await c.archiveStandings(rows);
      const problems = statusProblems(rows);
      out(
        v,
        { ok: problems.length === 0, problems, rows, archives },
        [
          'SERVER\tROLE\tVOLUME\tSTATE\tACTIONS\tDETAIL',
          ...rows.map(
            (r) =>
              `${r.server}\t${r.role}\t${r.volume}\t${r.state}\t${r.actions.join(',') || '-'}\t${statusDetail(r)}`,
          ),
          ...(archives.length
            ? ['', 'VOLUME\tARCHIVE\tLATEST\tTIME\tSYNC\tBEHIND', ...archives.map(standingLine)]
            : []),
        ].join('\n'),
      );
      if (problems.length > 0)
        throw new WalbError('FAILED_PRECONDITION', `needs an operator: ${problems.join('; ')}`);
    },
  ),
  cmd(
    'recover',
    '[VOL]',
    'diagnose every volume (or one) as the recovery runbook does and print the steps; --policy auto runs them',
    [0, 1],
    async (c, a, v) => {
      const policy = stringOpt(v, 'policy') ?? 'manual';
      if (policy !== 'auto' && policy !== 'manual')
        throw usageError(`--policy must be auto or manual, not '${policy}'`);
      const wdev = stringOpt(v, 'wdev');
      if (wdev !== undefined && a[0] === undefined)
        throw usageError('--wdev needs the volume (walbc recover VOL)');
      const facts = await gatherRecoverFacts(c, a[0]);
      const findings = classifyRecovery(facts, { volume: a[0], storage: stringOpt(v, 'storage') });
      const steps = planRecovery(facts, findings, { wdev });
      const plan = steps.map((s) => ({ volume: s.volume, server: s.server, command: stepCommand(s) }));
      const diagnosis = [
        'VOLUME\tSERVER\tFINDING',
        ...findings.map((f) => `${f.volume}\t${f.server}\t${findingText(f)}`),
        '',
        ...(steps.length ? ['VOLUME\tSERVER\tSTEP', ...steps.map(stepLine)] : ['nothing to do']),
      ].join('\n');
      if (v['dry-run'] === true || policy === 'manual') {
        out(v, { ok: steps.length === 0, policy, dryRun: true, findings, plan }, diagnosis);
        if (steps.length > 0)
          throw new WalbError(
            'FAILED_PRECONDITION',
            `${steps.length} step(s) to carry out (see the plan above)`,
          );
        return;
      }
      if (!v.json) process.stdout.write(`${diagnosis}\n\n`);
      const said = (s: Step, outcome: string, error?: string) => {
        if (!v.json) process.stdout.write(`${outcome}\t${stepLine(s)}${error ? `\t${error}` : ''}\n`);
      };
      const report = await runPlan(c, steps, said);
      const line = (s: Step) => ({ volume: s.volume, server: s.server, command: stepCommand(s) });
      const ok = report.failed.length === 0 && report.left.length === 0;
      if (v.json)
        printJson({
          ok,
          policy,
          dryRun: false,
          findings,
          plan,
          done: report.done.map(line),
          failed: report.failed.map((f) => ({ ...line(f.step), error: f.error })),
          left: report.left.map(line),
        });
      else
        process.stdout.write(
          `${report.done.length} step(s) done, ${report.failed.length} failed, ${report.left.length} left for an operator\n`,
        );
      if (!ok)
        throw new WalbError(
          'FAILED_PRECONDITION',
          `needs an operator: ${report.failed.length} step(s) failed, ${report.left.length} left`,
        );
    },
    {
      'dry-run': { type: 'boolean' },
      policy: { type: 'string' },
      ...on('storage'),
      wdev: { type: 'string' },
    },
    {
      'dry-run': 'only print the plan (as --policy manual does)',
      policy: 'manual (default): print the commands; auto: carry them out in order',
      storage:
        'the storage that lost its metadata when no storage has VOL (default: the first of the layout)',
      wdev: "VOL's wdev on that storage, for init-storage",
    },
  ),
  cmd(
    'serve-status',
    '--listen HOST:PORT',
    'serve the status page (HTML at /, JSON at /status.json) until SIGINT or SIGTERM',
    [0, 0],
    async (c, _a, v) => {
      const listen = stringOpt(v, 'listen');
      if (!listen) throw usageError('serve-status needs --listen HOST:PORT (e.g. 127.0.0.1:9180)');
      const intervalSec = intOpt(v, 'interval', 5);
      if (intervalSec < 1) throw usageError('--interval: at least 1 second');
      const page = await StatusPageServer.start(
        { listen, allowRemote: v['allow-remote'] === true, intervalSec },
        () => gatherStatus(c),
      );
      out(v, { address: page.address }, `status page on http://${page.address}/`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await page.close();
    },
    { listen: { type: 'string' }, interval: { type: 'string' }, 'allow-remote': { type: 'boolean' } },
    {
      listen: 'address of the page (loopback unless --allow-remote)',
      interval: 'seconds between two readings of the group and two refreshes of the page (default 5)',
      'allow-remote': 'serve off loopback too: plaintext HTTP without authentication',
    },
  ),
  cmd('get-state', 'VOL SERVER', 'state of a volume on one server (layout id)', [2, 2], async (c, a, v) => {
    const s = await c.getState(a[0], a[1]);
    out(v, { state: s }, s);
  }),
  cmd(
    'start',
    'VOL SERVER',
    'start a volume on a server (layout id): a storage as target (or --mode standby), a proxy, an archive',
    [2, 2],
    async (c, a, v) => {
      const state = await c.start(a[0], a[1], stringOpt(v, 'mode'));
      out(v, { state }, state);
    },
    { mode: { type: 'string' } },
    { mode: 'storage only: target (default) or standby' },
  ),
  cmd(
    'stop',
    'VOL SERVER',
    'stop a volume on a server (layout id)',
    [2, 2],
    async (c, a, v) => {
      const mode = stringOpt(v, 'mode');
      if (mode && !['graceful', 'force', 'empty'].includes(mode))
        throw usageError(`--mode must be graceful, force or empty, not '${mode}'`);
      const op = await c.stop(a[0], a[1], { mode, wait: v.wait === true, progress: progress(v) });
      out(v, op, v.wait ? `stopped` : `started: operation ${op.id}`);
    },
    { ...wait, mode: { type: 'string' } },
    { ...waitHelp, mode: 'graceful (default), force, or empty (a proxy sends everything first)' },
  ),
  cmd(
    'reset-vol',
    'VOL SERVER',
    'back to SyncReady for a new full backup (a storage resets its log; a stopped archive drops its history)',
    [2, 2],
    async (c, a, v) => {
      const state = await c.resetVolume(a[0], a[1]);
      out(v, { state }, state);
    },
  ),
  cmd(
    'clear-vol',
    'VOL SERVER',
    'remove a volume from a server (layout id), deleting its data there',
    [2, 2],
    async (c, a, v) => {
      const state = await c.clearVolume(a[0], a[1]);
      out(v, { state }, state);
    },
  ),
  cmd(
    'archive-info',
    'add|update|delete|list VOL [ARCHIVE]',
    'archive registrations of a volume on the proxies (all, or --proxy)',
    [2, 3],
    async (c, a, v) => {
      const action = a[0];
      if (!['add', 'update', 'delete', 'list'].includes(action))
        throw usageError(`archive-info: '${action}' is not add, update, delete or list`);
      const delay = stringOpt(v, 'delay');
      if (delay !== undefined && !/^\d+$/.test(delay)) throw usageError(`--delay: '${delay}' is not seconds`);
      const r = await c.archiveInfo(action as 'add', a[1], {
        archive: a[2],
        proxy: stringOpt(v, 'proxy'),
        address: stringOpt(v, 'address'),
        compression: stringOpt(v, 'compression'),
        delaySec: delay === undefined ? undefined : Number(delay),
      });
      const text =
        action === 'list'
          ? r
              .flatMap((p) =>
                (
                  p.archives as { name: string; address: string; compression: string; delaySec: number }[]
                ).map(
                  (x) => `${p.proxy}\t${x.name}\t${x.address}\t${x.compression || 'snappy'}\t${x.delaySec}`,
                ),
              )
              .join('\n')
          : `${action}: ${r.map((p) => p.proxy).join(', ')}`;
      out(v, r, text);
    },
    {
      ...on('proxy'),
      address: { type: 'string' },
      compression: { type: 'string' },
      delay: { type: 'string' },
    },
    {
      proxy: 'only this proxy (layout id; default: every proxy of the layout)',
      address: 'the archive HOST:PORT (default: from the layout)',
      compression: 'snappy (default), none, zstd, lz4, gzip, lzma, with an optional :LEVEL',
      delay: 'hold each wdiff this many seconds before sending it',
    },
  ),
  cmd(
    'copy-archive-info',
    'VOL FROM TO',
    'register on proxy TO the archives proxy FROM has for a volume, and start it there (to replace FROM)',
    [3, 3],
    async (c, a, v) => {
      const names = await c.copyArchiveInfo(a[0], a[1], a[2]);
      out(v, { archives: names }, `${a[2]}: ${names.join(', ')} registered, started`);
    },
  ),
  cmd(
    'start-synchronizing',
    'VOL ARCHIVE',
    'every new wdiff of a volume goes to ARCHIVE too: proxies stopped empty, ARCHIVE registered, replicated, restarted',
    [2, 2],
    async (c, a, v) => {
      await c.startSynchronizing(a[0], a[1], { progress: progress(v) });
      out(v, { volume: a[0], archive: a[1], synchronizing: true }, `${a[1]} is synchronizing ${a[0]}`);
    },
  ),
  cmd(
    'stop-synchronizing',
    'VOL ARCHIVE',
    'ARCHIVE no longer gets the wdiffs of a volume (its registration deleted on every proxy)',
    [2, 2],
    async (c, a, v) => {
      const proxies = await c.stopSynchronizing(a[0], a[1]);
      out(
        v,
        { volume: a[0], archive: a[1], proxies },
        proxies.length
          ? `${a[1]} no longer synchronizing ${a[0]} (deleted on ${proxies.join(', ')})`
          : `${a[1]} was not synchronizing ${a[0]}`,
      );
    },
  ),
  cmd(
    'switch-primary',
    'NEW',
    'make archive NEW the primary: synchronize it, wait for every storage to run with it, unsynchronize the old one',
    [1, 1],
    async (c, a, v) => {
      const timeout = stringOpt(v, 'timeout');
      if (timeout !== undefined && !/^\d+$/.test(timeout))
        throw usageError(`--timeout: '${timeout}' is not seconds`);
      const volumes = stringOpt(v, 'volumes');
      const r = await c.switchPrimary(a[0], {
        volumes: volumes?.split(',').filter(Boolean),
        timeoutMs: timeout === undefined ? undefined : Number(timeout) * 1000,
        say: (line) => process.stderr.write(`walbc switch-primary: ${line}\n`),
        progress: progress(v),
      });
      out(
        v,
        r,
        `${r.to} is the primary of ${r.volumes.join(', ') || 'no volume'}; list it first in the layout`,
      );
    },
    { volumes: { type: 'string' }, timeout: { type: 'string' } },
    {
      volumes: 'only these volumes (default: every volume of the primary)',
      timeout: 'how long to wait for the storages to run with NEW (seconds; default 3600)',
    },
  ),
  cmd(
    'replace-archive',
    'VOL OLD NEW',
    'a secondary archive NEW takes the place of OLD: replicated from it, synchronizing if OLD was, OLD cleared',
    [3, 3],
    async (c, a, v) => {
      const r = await c.replaceArchive(a[0], a[1], a[2], { progress: progress(v) });
      out(
        v,
        { volume: a[0], from: a[1], to: a[2], ...r },
        `${a[2]} replaces ${a[1]} for ${a[0]}${r.synchronizing ? ' (synchronizing)' : ''}; ${a[1]} cleared`,
      );
    },
  ),
  cmd(
    'get',
    'SERVER TARGET [VOL] [ARG]',
    "one of WalB's get queries on a server (layout id), e.g. get a0 num-diff vol0; TARGET 'help' lists them",
    [2, 4],
    async (c, a, v) => {
      if (a[1] === 'help') {
        const role = c.server(a[0]).role;
        out(v, Controller.GET_TARGETS[role], Controller.GET_TARGETS[role].join('\n'));
        return;
      }
      const lines = await c.get(a[0], a[1], a.slice(2));
      out(v, lines, lines.join('\n'));
    },
  ),
  cmd(
    'operations',
    'SERVER',
    'operations of a server (layout id): running ones, with --finished also the last finished',
    [1, 1],
    async (c, a, v) => {
      const ops = await c.listOperations(a[0], {
        volume: stringOpt(v, 'volume'),
        finished: v.finished === true,
      });
      out(
        v,
        ops,
        [
          'ID\tKIND\tVOLUME\tSTATE\tPROGRESS\tRESULT',
          ...ops.map(
            (o) =>
              `${o.id}\t${o.kind}\t${o.volume}\t${o.state}\t${Number(o.total) ? `${Math.round((100 * Number(o.done)) / Number(o.total))}%` : '-'}\t${o.state === 'failed' ? o.error : o.result || '-'}`,
          ),
        ].join('\n'),
      );
    },
    { volume: { type: 'string' }, finished: { type: 'boolean' } },
    { volume: 'only this volume', finished: 'also finished operations' },
  ),
  cmd(
    'watch',
    'SERVER OPERATION',
    'follow an operation until it ends (progress on a terminal); exit 1 unless it is done',
    [2, 2],
    async (c, a, v) => {
      const op = await c.watchOperation(a[0], a[1], progress(v));
      out(
        v,
        op,
        `\n${op.kind} of ${op.volume}: ${op.state}${op.result ? ` ${op.result}` : ''}${op.error ? ` (${op.error})` : ''}`,
      );
      if (op.state !== 'done')
        throw new WalbError(
          op.state === 'cancelled' ? 'CANCELLED' : isErrorCode(op.errorCode) ? op.errorCode : 'INTERNAL',
          `${op.kind} of ${op.volume} ${op.state}${op.error ? `: ${op.error}` : ''}`,
        );
    },
  ),
  cmd(
    'cancel',
    'SERVER OPERATION',
    'cancel a running operation (its volume goes back to where it was)',
    [2, 2],
    async (c, a, v) => {
      const op = await c.cancelOperation(a[0], a[1]);
      out(v, op, `${op.kind} of ${op.volume}: ${op.state}`);
    },
  ),
  cmd(
    'call',
    'SERVER METHOD [JSON]',
    'any command of a server\'s gRPC service, e.g. call s0 Status \'{"volume":"vol0"}\'',
    [2, 3],
    async (c, a, v) => {
      let req: object = {};
      if (a[2] !== undefined) {
        try {
          req = JSON.parse(a[2]) as object;
        } catch {
          throw usageError(`'${a[2]}' is not JSON`);
        }
      }
      const r = await c.callMethod(a[0], a[1], req);
      printJson(r);
      void v;
    },
  ),
  cmd('kick-all', '', 'run every delayed transfer now', [0, 0], async (c, _a, v) => {
    const failed = await c.kickAll();
    for (const f of failed) process.stderr.write(`walbc kick-all: ${f.id} did not answer: ${f.error}\n`);
    out(v, { failed }, failed.length ? 'kicked the others' : 'kicked');
  }),
  cmd(
    'is-overflow',
    'VOL',
    "print 1 when the volume's log overflowed",
    [1, 1],
    async (c, a, v) => {
      const o = await c.isOverflow(a[0], stringOpt(v, 'storage'));
      out(v, o, o ? '1' : '0');
    },
    on('storage'),
  ),
  cmd(
    'is-wdiff-send-error',
    'VOL',
    'print 1 when a proxy gave up sending to an archive',
    [1, 1],
    async (c, a, v) => {
      const e = await c.isWdiffSendError(a[0], stringOpt(v, 'proxy'), stringOpt(v, 'archive'));
      out(v, e, e ? '1' : '0');
    },
    { ...on('proxy'), ...on('archive') },
  ),
];
