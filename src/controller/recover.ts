// walbc recover (docs/servers.md §9.5): the recovery runbook (docs/operations.md "Recovery runbook") as code. What
// every server of the layout answered is classified per volume (classifyRecovery) and turned into the runbook's
// steps (planRecovery), both pure functions over the facts; gatherRecoverFacts reads the facts and runStep carries
// out one step through the controller, the only parts that talk to the servers.
import { WalbError } from '../common/errors';
import type { Controller, Layout, StatusRow } from './controller';

/** How long each server is given to answer while the facts are read (as `walbc status` does). */
const FACTS_TIMEOUT_MS = 5000;

/** A proxy as a storage sees it: where it sends the logs, and whether it holds that proxy available. */
export interface ShippingTarget {
  address: string;
  available: boolean;
}

/** What recover decides from: the layout, `walbc status`'s rows, and each answering storage's proxy list. */
export interface RecoverFacts {
  layout: Layout;
  rows: StatusRow[];
  /** By storage id; a storage that did not answer is missing. */
  shipsTo: Record<string, ShippingTarget[]>;
}

/** One thing recover found, on one volume ('-': the group) and one server ('-': none in particular). */
export type Finding = { volume: string; server: string } & (
  | { kind: 'healthy' }
  | { kind: 'unreachable'; role: StatusRow['role']; error: string }
  | { kind: 'busy'; operation: string }
  | { kind: 'proxy-unavailable'; proxy: string }
  | { kind: 'send-error'; archive: string }
  | { kind: 'overflow' }
  | { kind: 'storage-lost' }
  | { kind: 'proxy-lost' }
  | { kind: 'proxy-gap'; archive: string; gid: number }
  | { kind: 'primary-lost'; cleared: boolean; promote: string | null }
  | { kind: 'secondary-lost' }
);

/** What a step does; `operator` is what only an operator can do (a host, a service, the layout file). */
export type Action =
  | { do: 'kick-all' }
  | { do: 'stop'; volume: string; server: string }
  | { do: 'hash-backup'; volume: string; storage: string }
  | { do: 'full-backup'; volume: string; storage: string }
  | { do: 'init-storage'; volume: string; storage: string; wdev: string | null }
  | { do: 'init-archive'; volume: string; archive: string }
  | { do: 'reset-vol'; volume: string; server: string }
  | { do: 'start-synchronizing'; volume: string; archive: string }
  | { do: 'stop-synchronizing'; volume: string; archive: string }
  | { do: 'replicate-sync'; volume: string; from: string; to: string }
  | { do: 'operator'; text: string };

/** One step of the plan: the volume ('-': the group), the server it acts on ('-': several) and what it does. */
export interface Step {
  volume: string;
  server: string;
  action: Action;
}

/** A finding as one phrase. */
export function findingText(f: Finding): string {
  switch (f.kind) {
    case 'healthy':
      return 'healthy';
    case 'unreachable':
      return `the ${f.role} ${f.server} does not answer (${f.error})`;
    case 'busy':
      return `${f.operation} runs on ${f.server}; recover again once it ended`;
    case 'proxy-unavailable':
      return `${f.server} holds ${f.proxy} unavailable although it answers`;
    case 'send-error':
      return `${f.server} gave up sending ${f.volume} to ${f.archive}`;
    case 'overflow':
      return `the log of ${f.volume} on ${f.server} overflowed`;
    case 'storage-lost':
      return `no storage has ${f.volume}: ${f.server} lost its metadata`;
    case 'proxy-lost':
      return `${f.server} lost ${f.volume} (its metadata or wdiffs) although a storage ships to it`;
    case 'proxy-gap':
      return (
        `${f.archive} is at gid ${f.gid} of ${f.volume}, which every storage shipped past and no proxy holds a ` +
        `wdiff from: a proxy lost it` +
        (f.server === '-' ? '' : `; ${f.server}'s wdiffs are refused as too new`)
      );
    case 'primary-lost':
      return (
        `the primary archive ${f.server} lost ${f.volume}` +
        (f.promote
          ? `; ${f.promote} synchronizes it and becomes the primary`
          : '; a full backup starts it again')
      );
    case 'secondary-lost':
      return `the synchronizing secondary ${f.server} lost ${f.volume}`;
  }
}

/** The walbc arguments of an action; null for an operator's action. */
export function actionArgs(a: Action): string[] | null {
  switch (a.do) {
    case 'kick-all':
      return ['kick-all'];
    case 'stop':
      return ['stop', a.volume, a.server, '--wait'];
    case 'hash-backup':
      return ['hash-backup', a.volume, '--storage', a.storage, '--wait'];
    case 'full-backup':
      return ['full-backup', a.volume, '--storage', a.storage, '--wait'];
    case 'init-storage':
      return ['init-storage', a.volume, a.wdev ?? 'WDEV', '--storage', a.storage];
    case 'init-archive':
      return ['call', a.archive, 'InitVol', JSON.stringify({ volume: a.volume })];
    case 'reset-vol':
      return ['reset-vol', a.volume, a.server];
    case 'start-synchronizing':
      return ['start-synchronizing', a.volume, a.archive];
    case 'stop-synchronizing':
      return ['stop-synchronizing', a.volume, a.archive];
    case 'replicate-sync':
      return ['replicate', a.volume, a.from, a.to, '--sync'];
    case 'operator':
      return null;
  }
}

/** Whether only an operator can carry the step out: an action outside walbc, or a wdev recover was not told. */
export function needsOperator(a: Action): boolean {
  return a.do === 'operator' || (a.do === 'init-storage' && a.wdev === null);
}

/** The step as the operator types it (`walbc ...`, quoted for a shell), or the operator's action. */
export function stepCommand(s: Step): string {
  if (s.action.do === 'operator') return `operator: ${s.action.text}`;
  const quoted = (actionArgs(s.action) ?? []).map((x) =>
    /^[\w.,:/=@-]+$/.test(x) ? x : `'${x.replace(/'/g, `'\\''`)}'`,
  );
  const line = ['walbc', ...quoted].join(' ');
  return needsOperator(s.action) ? `operator: ${line} (WDEV: the wdev of ${s.volume} on ${s.server})` : line;
}

/** A plan line: VOLUME SERVER COMMAND. */
export function stepLine(s: Step): string {
  return `${s.volume}\t${s.server}\t${stepCommand(s)}`;
}

/** A storage state in which the volume is backed up from that storage (not Clear, not a standby). */
const BACKED_UP_FROM = ['Target', 'Stopped'];

/**
 * Whether an archive the proxies send to (the primary, or a synchronizing secondary), at gid `gid` of a volume,
 * waits for a wdiff that nobody holds any more (a proxy lost its wdiffs but kept its registrations): every storage the volume is backed up from shipped past `gid`
 * (done gid above it), and no proxy has a wdiff queued for the archive that it can take next (one whose gids run
 * through `gid`). Undefined when some proxy or storage still holds it, or when a fact is missing (a server that
 * does not answer, a volume whose status could not be read, a proxy that does not describe its queue): then the
 * archive may only be slow. Otherwise the proxy whose wdiffs the archive refuses as too new ('-': none holds any).
 */
function gapRefusedBy(
  layout: Layout,
  of: readonly StatusRow[],
  archive: string,
  gid: number,
): string | undefined {
  const row = (id: string) => of.find((r) => r.server === id);
  const servers = [...layout.storages, ...layout.proxies].map((s) => s.id);
  if (servers.some((id) => row(id) && !row(id)!.storage && !row(id)!.proxy)) return undefined;
  const backedUpFrom = of.filter((r) => r.storage && BACKED_UP_FROM.includes(r.state));
  if (backedUpFrom.length === 0 || backedUpFrom.some((r) => r.storage!.doneGid <= gid)) return undefined;
  let refused = '-';
  for (const p of layout.proxies) {
    const queue = row(p.id)?.proxy?.archives.find((a) => a.name === archive);
    if (!queue || queue.pendingWdiffs === 0) continue;
    if (queue.queuedGids.length === 0) return undefined;
    if (queue.queuedGids.some((r) => r.begin <= gid && gid < r.end)) return undefined;
    if (refused === '-' && queue.queuedGids.some((r) => r.begin > gid)) refused = p.id;
  }
  return refused;
}

/**
 * What recover finds, per volume of `facts` (or only `volume`), in the runbook's terms. A server that does not
 * answer is a finding of its own, and nothing is concluded from its silence. `storage`: the storage that lost its
 * metadata when no storage has a volume any more (default: the first of the layout).
 */
export function classifyRecovery(
  facts: RecoverFacts,
  opts: { volume?: string; storage?: string } = {},
): Finding[] {
  const { layout, rows } = facts;
  const primary = layout.archives[0].id;
  const down = new Set(rows.filter((r) => r.state === 'UNREACHABLE').map((r) => r.server));
  const found: Finding[] = rows
    .filter((r) => r.state === 'UNREACHABLE')
    .map((r) => ({ kind: 'unreachable', volume: '-', server: r.server, role: r.role, error: r.error ?? '' }));
  const proxyAt = new Map(layout.proxies.map((p) => [p.address, p.id]));
  for (const [storage, targets] of Object.entries(facts.shipsTo))
    for (const t of targets) {
      const proxy = proxyAt.get(t.address);
      if (proxy && !t.available && !down.has(proxy))
        found.push({ kind: 'proxy-unavailable', volume: '-', server: storage, proxy });
    }

  const volumes = [...new Set(rows.map((r) => r.volume))]
    .filter((v) => v !== '-' && (!opts.volume || v === opts.volume))
    .sort();
  for (const volume of volumes) {
    const of = rows.filter((r) => r.volume === volume && r.state !== 'UNREACHABLE');
    const row = (id: string) => of.find((r) => r.server === id);
    const busy = of.find((r) => r.operations.length > 0);
    if (busy) {
      const op = busy.operations[0];
      found.push({ kind: 'busy', volume, server: busy.server, operation: `${op.kind} ${op.id}` });
      continue;
    }
    const before = found.length;
    const storages = of.filter((r) => r.role === 'storage');
    const proxies = of.filter((r) => r.role === 'proxy');
    const backedUpFrom = storages.filter((r) => BACKED_UP_FROM.includes(r.state));
    const registeredEverywhere = (archive: string) =>
      proxies.length > 0 && proxies.every((p) => p.proxy?.archives.some((a) => a.name === archive));
    const primaryRow = row(primary);
    const primaryHasBase = !!primaryRow?.archive?.latest;

    if (!down.has(primary)) {
      const registered = proxies.some((p) => p.proxy?.archives.some((a) => a.name === primary));
      const lost = primaryRow
        ? !primaryHasBase && primaryRow.state === 'SyncReady' && backedUpFrom.length > 0
        : backedUpFrom.length > 0 || registered;
      if (lost) {
        const promote = layout.archives
          .slice(1)
          .map((a) => a.id)
          .find((a) => !!row(a)?.archive?.latest && registeredEverywhere(a));
        found.push({
          kind: 'primary-lost',
          volume,
          server: primary,
          cleared: !primaryRow,
          promote: promote ?? null,
        });
      }
    }
    if (primaryHasBase && storages.length === 0 && layout.storages.every((s) => !down.has(s.id)))
      found.push({ kind: 'storage-lost', volume, server: opts.storage ?? layout.storages[0].id });
    for (const s of storages)
      if (s.storage?.overflow) found.push({ kind: 'overflow', volume, server: s.server });
    const shippedBy = new Set(
      backedUpFrom.flatMap((s) => (facts.shipsTo[s.server] ?? []).map((t) => proxyAt.get(t.address))),
    );
    for (const p of layout.proxies)
      if (shippedBy.has(p.id) && !down.has(p.id) && !row(p.id) && primaryHasBase)
        found.push({ kind: 'proxy-lost', volume, server: p.id });
    const latest = primaryRow?.archive?.latest;
    const everyoneAnswered = [...layout.storages, ...layout.proxies].every((s) => !down.has(s.id));
    if (latest && primaryRow?.state === 'Archived' && everyoneAnswered && found.length === before) {
      const refusedBy = gapRefusedBy(layout, of, primary, latest.gidB);
      if (refusedBy)
        found.push({ kind: 'proxy-gap', volume, server: refusedBy, archive: primary, gid: latest.gidB });
    }
    // A synchronizing secondary waits the same way for wdiffs a proxy lost (it was down while they were queued
    // for it). A gap of the primary is bridged for both by its hash backup and replicate --sync.
    if (everyoneAnswered && found.length === before)
      for (const a of layout.archives.slice(1)) {
        const at = row(a.id)?.archive?.latest;
        if (!at || row(a.id)?.state !== 'Archived' || !registeredEverywhere(a.id)) continue;
        const refusedBy = gapRefusedBy(layout, of, a.id, at.gidB);
        if (refusedBy)
          found.push({ kind: 'proxy-gap', volume, server: refusedBy, archive: a.id, gid: at.gidB });
      }
    for (const a of layout.archives.slice(1))
      if (!down.has(a.id) && !row(a.id) && registeredEverywhere(a.id))
        found.push({ kind: 'secondary-lost', volume, server: a.id });
    for (const p of proxies)
      for (const a of p.proxy?.archives ?? [])
        if (a.sendError && !down.has(a.name) && row(a.name))
          found.push({ kind: 'send-error', volume, server: p.server, archive: a.name });
    if (found.length === before) found.push({ kind: 'healthy', volume, server: '-' });
  }
  return found;
}

/**
 * The runbook's steps for the findings, in the order they are carried out: servers to start first (an operator's),
 * then each volume's steps, then one kick of every storage and proxy when a transfer waits for one. A backup that
 * starts a new history (full or hash) unsynchronizes the secondaries, so each that synchronized is made
 * synchronizing again after it. `wdev`: the wdev a storage that lost its metadata gets the volume on again.
 */
export function planRecovery(
  facts: RecoverFacts,
  findings: readonly Finding[],
  opts: { wdev?: string } = {},
): Step[] {
  const steps: Step[] = [];
  const primary = facts.layout.archives[0].id;
  for (const f of findings)
    if (f.kind === 'unreachable')
      steps.push({
        volume: '-',
        server: f.server,
        action: {
          do: 'operator',
          text: `start walb-${f.role} on the host of ${f.server} (systemctl start walb-${f.role}), then walbc recover again`,
        },
      });
  let kick = findings.some((f) => f.kind === 'proxy-unavailable' || f.kind === 'send-error');

  const volumes = [...new Set(findings.map((f) => f.volume))].filter((v) => v !== '-');
  for (const volume of volumes) {
    const of = findings.filter((f) => f.volume === volume);
    const has = (kind: Finding['kind']) => of.find((f) => f.kind === kind);
    const add = (server: string, action: Action) => steps.push({ volume, server, action });
    const rows = facts.rows.filter((r) => r.volume === volume);
    const stateOn = (id: string) => rows.find((r) => r.server === id)?.state;
    const synchronizing = facts.layout.archives
      .slice(1)
      .map((a) => a.id)
      .filter((a) => {
        const proxies = rows.filter((r) => r.proxy);
        return proxies.length > 0 && proxies.every((p) => p.proxy!.archives.some((x) => x.name === a));
      });
    const backup = (kind: 'hash-backup' | 'full-backup', storage: string) => {
      add(storage, { do: kind, volume, storage });
      for (const a of synchronizing)
        if (!of.some((f) => f.kind === 'secondary-lost' && f.server === a))
          add(a, { do: 'replicate-sync', volume, from: primary, to: a });
    };
    const stopIfTarget = (storage: string) => {
      if (stateOn(storage) === 'Target') add(storage, { do: 'stop', volume, server: storage });
    };
    /** The storage the volume is backed up from (a Target one first); undefined when none is. */
    const storageOf = () =>
      rows.find((r) => r.role === 'storage' && r.state === 'Target')?.server ??
      rows.find((r) => r.role === 'storage' && BACKED_UP_FROM.includes(r.state))?.server;

    const lostPrimary = has('primary-lost');
    if (lostPrimary?.kind === 'primary-lost') {
      if (lostPrimary.promote) {
        const to = lostPrimary.promote;
        const address = facts.layout.archives.find((a) => a.id === to)!.address;
        add(primary, { do: 'stop-synchronizing', volume, archive: primary });
        add('-', {
          do: 'operator',
          text:
            `restart every storage with ${to} as its archive (WALB_ARCHIVE=${address} in /etc/walb/storage.env, ` +
            `systemctl restart walb-storage), list ${to} first in the layout's archives; for a secondary again: ` +
            `walbc replicate ${volume} ${to} ${primary} --sync`,
        });
      } else {
        const storage = storageOf();
        if (!storage) {
          add('-', {
            do: 'operator',
            text: `no storage backs ${volume} up: a full backup from the storage that should (walbc full-backup ${volume} --storage ID --wait)`,
          });
          continue;
        }
        if (lostPrimary.cleared) add(primary, { do: 'init-archive', volume, archive: primary });
        if (stateOn(storage) === 'Target') add(storage, { do: 'stop', volume, server: storage });
        add(storage, { do: 'reset-vol', volume, server: storage });
        backup('full-backup', storage);
        kick = true;
      }
    } else {
      const lostStorage = has('storage-lost');
      const lostProxy = has('proxy-lost');
      const gap = of.find((f) => f.kind === 'proxy-gap' && f.archive === primary);
      const overflow = has('overflow');
      if (lostStorage) {
        const storage = lostStorage.server;
        add(storage, { do: 'init-storage', volume, storage, wdev: opts.wdev ?? null });
        backup('hash-backup', storage);
      } else if (lostProxy || gap || overflow) {
        if (lostProxy) add(primary, { do: 'start-synchronizing', volume, archive: primary });
        // A lost proxy or a gap is found only where a storage backs the volume up.
        const storage = overflow?.server ?? storageOf()!;
        stopIfTarget(storage);
        backup('hash-backup', storage);
      }
    }
    // A secondary that lost its data, or that waits for wdiffs a proxy lost: replicated level and synchronizing.
    for (const f of of)
      if (f.kind === 'secondary-lost' || (f.kind === 'proxy-gap' && f.archive !== primary)) {
        const to = f.kind === 'proxy-gap' ? f.archive : f.server;
        add(to, { do: 'replicate-sync', volume, from: primary, to });
        kick = true;
      }
  }
  if (kick) steps.push({ volume: '-', server: '-', action: { do: 'kick-all' } });
  return steps;
}

/** The outcome of carrying out a plan: each step done, failed (with why) or left for an operator. */
export interface RecoverReport {
  done: Step[];
  failed: { step: Step; error: string }[];
  left: Step[];
}

/**
 * Carries out a plan in order (--policy auto). A step only an operator can do is left, and so is every step after
 * it on the same volume; a server to start ('-' volume, before any volume's steps) leaves the whole rest, as the
 * facts were read without it. A failed step leaves the rest of its volume.
 */
export async function runPlan(
  c: Controller,
  steps: readonly Step[],
  onStep: (s: Step, outcome: 'done' | 'failed' | 'left', error?: string) => void = () => undefined,
): Promise<RecoverReport> {
  const report: RecoverReport = { done: [], failed: [], left: [] };
  const blocked = new Set<string>();
  let all = false;
  for (const s of steps) {
    if (all || blocked.has(s.volume) || needsOperator(s.action)) {
      report.left.push(s);
      onStep(s, 'left');
      if (s.volume === '-' && s.action.do === 'operator') all = true;
      else blocked.add(s.volume);
      continue;
    }
    try {
      await runStep(c, s.action);
      report.done.push(s);
      onStep(s, 'done');
    } catch (err) {
      const error = (err as Error).message;
      report.failed.push({ step: s, error });
      onStep(s, 'failed', error);
      blocked.add(s.volume);
    }
  }
  return report;
}

/** One step through the controller, as the walbc verb it prints would do it. */
async function runStep(c: Controller, a: Action): Promise<void> {
  switch (a.do) {
    case 'kick-all':
      await c.kickAll();
      return;
    case 'stop':
      await c.stop(a.volume, a.server, { wait: true });
      return;
    case 'hash-backup':
      await c.hashBackup(a.volume, { storage: a.storage, wait: true });
      return;
    case 'full-backup':
      await c.fullBackup(a.volume, { storage: a.storage, wait: true });
      return;
    case 'init-storage':
      await c.initStorage(a.volume, a.wdev!, a.storage);
      return;
    case 'init-archive':
      await c.callMethod(a.archive, 'InitVol', { volume: a.volume });
      return;
    case 'reset-vol':
      await c.resetVolume(a.volume, a.server);
      return;
    case 'start-synchronizing':
      await c.startSynchronizing(a.volume, a.archive);
      return;
    case 'stop-synchronizing':
      await c.stopSynchronizing(a.volume, a.archive);
      return;
    case 'replicate-sync':
      await c.replicate(a.volume, a.from, a.to, { wait: true });
      await c.startSynchronizing(a.volume, a.to);
      return;
    case 'operator':
      throw new WalbError('FAILED_PRECONDITION', `an operator's step: ${a.text}`);
  }
}

/**
 * Reads the facts: `walbc status`'s rows (one volume or all) and the proxy list of every storage that answers.
 * The rows are read downstream, storages, then proxies, then archives: a wdiff only moves that way, so one on its
 * way is seen where it was (a storage not done past it, a proxy holding it) or in the archive's latest gid, never
 * missed by all three, and a gap (gapRefusedBy) is never concluded from a wdiff in flight.
 */
export async function gatherRecoverFacts(c: Controller, volume?: string): Promise<RecoverFacts> {
  const rows: StatusRow[] = [];
  for (const role of ['storage', 'proxy', 'archive'] as const) rows.push(...(await c.status(volume, [role])));
  const shipsTo: Record<string, ShippingTarget[]> = {};
  await Promise.all(
    c.layout.storages.map(async ({ id }) => {
      const s = c.server(id);
      if (s.role !== 'storage') return;
      const list = await s.client.ListProxies({}, FACTS_TIMEOUT_MS).catch(() => undefined);
      if (list) shipsTo[id] = list.proxies.map((p) => ({ address: p.address, available: p.available }));
    }),
  );
  return { layout: c.layout, rows, shipsTo };
}
