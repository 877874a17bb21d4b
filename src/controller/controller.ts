// The controller of a backup group (walbc and any TypeScript program): knows the layout (storages, proxies in
// priority order, archives with the primary first) and runs the operator's verbs across the servers
// (docs/servers.md §9).
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { WalbError, errorCode, errorMessage, isErrorCode } from '../common/errors';
import { snapText } from '../common/meta';
import {
  channelCredentials,
  connect,
  fromServiceError,
  loadProto,
  type Promised,
  type TlsFiles,
} from '../common/grpc';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ProtoGrpcType as CommonProto } from '../generated/common';
import type { ProtoGrpcType as ProxyProto } from '../generated/proxy';
import type { ProtoGrpcType as StorageProto } from '../generated/storage';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { ExportReply__Output } from '../generated/walb/v1/ExportReply';
import type { Operation__Output } from '../generated/walb/v1/Operation';
import type { OperationsClient } from '../generated/walb/v1/Operations';
import type { ProxyClient } from '../generated/walb/v1/Proxy';
import type { StorageClient } from '../generated/walb/v1/Storage';
import { backupRow, type BackupRow } from './backups';
import { archiveStandings, isSynchronizing, type ArchiveStanding, type ArchiveSide } from './replicas';

export interface ServerEntry {
  id: string;
  address: string;
}

export interface Layout {
  storages: ServerEntry[];
  /** Priority order. */
  proxies: ServerEntry[];
  /** The first is the primary archive. */
  archives: ServerEntry[];
  /** Mutual TLS: the controller's certificate and key and the group's CA (PEM paths); absent: plaintext. */
  tls?: TlsFiles;
}

const ADDRESS_RE = /^[^\s:]+:\d{1,5}$/;

/** Reads and checks a layout file; CONFIG errors name the key. */
export function loadLayout(file: string): Layout {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new WalbError('CONFIG', `layout ${file}: ${(err as Error).message}`);
  }
  const l = raw as Partial<Layout>;
  const ids = new Set<string>();
  for (const key of ['storages', 'proxies', 'archives'] as const) {
    const list = l[key];
    if (!Array.isArray(list) || list.length === 0)
      throw new WalbError('CONFIG', `layout ${file}: ${key} must be a non-empty list`);
    list.forEach((e, i) => {
      if (!e || typeof e.id !== 'string' || !e.id)
        throw new WalbError('CONFIG', `layout ${file}: ${key}[${i}].id is missing`);
      if (typeof e.address !== 'string' || !ADDRESS_RE.test(e.address))
        throw new WalbError('CONFIG', `layout ${file}: ${key}[${i}].address must be HOST:PORT`);
      if (ids.has(e.id)) throw new WalbError('CONFIG', `layout ${file}: id ${e.id} is used twice`);
      ids.add(e.id);
    });
  }
  if (l.tls !== undefined) {
    const t = l.tls as Partial<TlsFiles>;
    for (const k of ['ca', 'cert', 'key'] as const)
      if (typeof t[k] !== 'string' || !t[k])
        throw new WalbError('CONFIG', `layout ${file}: tls.${k} must name a PEM file (or leave tls out)`);
  }
  return l as Layout;
}

type Storage = Promised<StorageClient>;
type Proxy = Promised<ProxyClient>;
type Archive = Promised<ArchiveClient>;

/** A server of the layout with its role and the client of its role's service. */
export type RoleServer =
  | { role: 'storage'; client: Storage }
  | { role: 'proxy'; client: Proxy }
  | { role: 'archive'; client: Archive };

/** Where a volume stands on a storage. */
export interface StorageFacts {
  doneGid: number;
  queuedSnapshots: number;
  /** Physical blocks of the wdev's log in use, and its capacity (0: no log). */
  logUsagePb: number;
  logCapacityPb: number;
  overflow: boolean;
}

/** Where a volume stands on a proxy: the backlog per archive. */
export interface ProxyFacts {
  archives: {
    name: string;
    pendingWdiffs: number;
    pendingBytes: number;
    sendError: boolean;
    /** The gids the queued wdiffs lead through, as runs [begin, end) (empty from a proxy that predates them). */
    queuedGids: { begin: number; end: number }[];
  }[];
}

/** Where a volume stands on an archive. */
export interface ArchiveFacts {
  latest: { gidB: number; gidE: number } | null;
  diffs: number;
  diffBytes: number;
  restored: number[];
  /** The newest restorable snapshot (the recovery point): its gid and Unix time; null before the first backup. */
  newestRestorable: { gid: number; timestamp: number } | null;
  /** Seconds from the recovery point to when the status was read; null before the first backup. */
  recoveryPointAgeSec: number | null;
  /** Bytes on disk of the base image, the wdiffs and the restored images (absent from an older archive). */
  disk?: { base: number; diffs: number; restored: number };
  /** What the archive's maintenance worker last did for the volume (docs/servers.md §6.8); absent when it is off. */
  maintenance?: string;
}

/** An operation running on a volume, with its progress (in the operation's unit; bytes for transfers). */
export interface RunningOperation {
  id: string;
  kind: string;
  done: number;
  total: number;
  startedMs: number;
}

export interface StatusRow {
  server: string;
  role: 'storage' | 'proxy' | 'archive';
  volume: string;
  /** The volume's state, or UNREACHABLE when the server did not answer. */
  state: string;
  /** Actions running on the volume. */
  actions: string[];
  /** The operations running on the volume there (walb.v1.Operations). */
  operations: RunningOperation[];
  /** Exactly one of these when the server answered for the volume; `error` says why not otherwise. */
  storage?: StorageFacts;
  proxy?: ProxyFacts;
  archive?: ArchiveFacts;
  error?: string;
}

/** The DETAIL column of `walbc status`: the facts of a row as one line of text. */
export function statusDetail(r: StatusRow): string {
  const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  if (r.storage) {
    const s = r.storage;
    const log = s.logCapacityPb
      ? `log ${Math.round((100 * s.logUsagePb) / s.logCapacityPb)}% used`
      : 'no log';
    return `done gid ${s.doneGid}, ${s.queuedSnapshots} snapshot(s) queued, ${log}${s.overflow ? ', OVERFLOW' : ''}`;
  }
  if (r.proxy) {
    if (r.proxy.archives.length === 0) return 'no archive registered';
    return r.proxy.archives
      .map(
        (a) =>
          `${a.name}: ${a.pendingWdiffs} wdiff(s) ${mib(a.pendingBytes)} to send${a.sendError ? ', SEND-ERROR' : ''}`,
      )
      .join('; ');
  }
  if (r.archive) {
    const a = r.archive;
    const latest = a.latest ? `latest ${snapText(a.latest)}` : 'no base';
    const disk = a.disk
      ? `; disk: base ${mib(a.disk.base)}, wdiffs ${mib(a.disk.diffs)}, restored ${mib(a.disk.restored)}`
      : '';
    const maintenance = a.maintenance ? `; maintenance: ${a.maintenance}` : '';
    return `${latest}, ${a.diffs} wdiff(s) ${mib(a.diffBytes)}, ${a.restored.length} restored${disk}${maintenance}`;
  }
  return r.error ?? '';
}

/**
 * What in a status table needs an operator, one phrase each: a server that did not answer, an overflowed log, a
 * proxy that gave up on an archive, a volume whose status could not be read. Empty when all is well.
 */
export function statusProblems(rows: readonly StatusRow[]): string[] {
  const problems: string[] = [];
  for (const r of rows) {
    if (r.state === 'UNREACHABLE') problems.push(`${r.server} is unreachable`);
    else if (r.error !== undefined) problems.push(`${r.volume} on ${r.server}: ${r.error}`);
    if (r.storage?.overflow) problems.push(`the log of ${r.volume} on ${r.server} overflowed`);
    for (const a of r.proxy?.archives ?? [])
      if (a.sendError) problems.push(`${r.server} gave up sending ${r.volume} to ${a.name}`);
  }
  return problems;
}

/** A restorable snapshot as walbc prints it: gid, time (UTC), 1 when explicit. */
export function restorableLine(s: { gid: number; timestamp: number; explicit: boolean }): string {
  return `${s.gid} ${new Date(s.timestamp * 1000).toISOString().slice(0, 19)} ${s.explicit ? 1 : 0}`;
}

/** How long `status` waits for each server. */
const STATUS_TIMEOUT_MS = 5000;

export class Controller {
  private readonly storages = new Map<string, Storage>();
  private readonly proxies = new Map<string, Proxy>();
  private readonly archives = new Map<string, Archive>();
  private readonly ops = new Map<string, Promised<OperationsClient>>();

  /** `timeoutMs`: the deadline of every call (status uses a shorter one). */
  constructor(
    readonly layout: Layout,
    timeoutMs = 60_000,
  ) {
    const creds = channelCredentials(layout.tls);
    const S = loadProto<StorageProto>('walb/v1/storage.proto').proto.walb.v1.Storage;
    const P = loadProto<ProxyProto>('walb/v1/proxy.proto').proto.walb.v1.Proxy;
    const A = loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive;
    const O = loadProto<CommonProto>('walb/v1/common.proto').proto.walb.v1.Operations;
    for (const s of layout.storages) this.storages.set(s.id, connect(S, s.address, creds, timeoutMs));
    for (const p of layout.proxies) this.proxies.set(p.id, connect(P, p.address, creds, timeoutMs));
    for (const a of layout.archives) this.archives.set(a.id, connect(A, a.address, creds, timeoutMs));
    for (const e of [...layout.storages, ...layout.proxies, ...layout.archives])
      this.ops.set(e.id, connect(O, e.address, creds, timeoutMs));
  }

  close(): void {
    for (const m of [this.storages, this.proxies, this.archives, this.ops])
      for (const c of m.values()) c.close();
  }

  private pick<C>(map: Map<string, C>, id: string | undefined, role: string): [string, C] {
    const key = id ?? [...map.keys()][0];
    const c = map.get(key);
    if (!c) throw new WalbError('INVALID_ARGUMENT', `no ${role} '${id}' in the layout`);
    return [key, c];
  }

  get primaryArchive(): string {
    return this.layout.archives[0].id;
  }

  private archiveAddress(id: string): string {
    const a = this.layout.archives.find((x) => x.id === id);
    if (!a) throw new WalbError('INVALID_ARGUMENT', `no archive '${id}' in the layout`);
    return a.address;
  }

  /**
   * init-vol: the storage on its wdev, the primary archive (the layout's first), registered on every proxy. Other
   * archives get the volume by replication (docs/servers.md §7.7).
   */
  async initVolume(volume: string, wdev: string, storage?: string): Promise<void> {
    const primary = this.layout.archives[0];
    const a = this.archives.get(primary.id)!;
    if ((await a.GetState({ volume })).state === 'Clear') await a.InitVol({ volume });
    for (const [, p] of this.proxies) {
      try {
        await p.ArchiveInfoAdd({ volume, name: primary.id, address: primary.address });
      } catch (err) {
        if (errorCode(err) !== 'ALREADY_EXISTS') throw err;
      }
      const st = await p.GetState({ volume });
      if (st.state === 'Stopped') await p.Start({ volume });
    }
    await this.pick(this.storages, storage, 'storage')[1].InitVol({ volume, wdev });
  }

  /** Every server of the layout, storages first, then proxies, then archives (layout order within each). */
  private allServers(): (RoleServer & { id: string })[] {
    return [
      ...[...this.storages].map(([id, client]) => ({ id, role: 'storage' as const, client })),
      ...[...this.proxies].map(([id, client]) => ({ id, role: 'proxy' as const, client })),
      ...[...this.archives].map(([id, client]) => ({ id, role: 'archive' as const, client })),
    ];
  }

  /** A server of the layout by id, with its role. */
  server(id: string): RoleServer {
    const found = this.allServers().find((x) => x.id === id);
    if (found) return found;
    throw new WalbError('INVALID_ARGUMENT', `no server '${id}' in the layout`);
  }

  /** Any command of a server's service, by method name, with a JSON-shaped request (walbc call). */
  async callMethod(serverId: string, method: string, req: object): Promise<unknown> {
    const { role, client } = this.server(serverId);
    const fn = /^[A-Z]\w*$/.test(method) ? client.unaryMethod(method) : undefined;
    if (!fn) throw new WalbError('INVALID_ARGUMENT', `the ${role} service has no method '${method}'`);
    return fn(req);
  }

  /** WalB's `get` targets this controller answers, per role (docs/servers.md §9.3). */
  static readonly GET_TARGETS: Record<StatusRow['role'], string[]> = {
    storage: ['state', 'host-type', 'vol', 'is-overflow', 'log-usage', 'uuid', 'latest-snap'],
    proxy: ['state', 'host-type', 'vol', 'is-wdiff-send-error', 'proxy-diff'],
    archive: [
      'state',
      'host-type',
      'vol',
      'restorable',
      'restored',
      'uuid',
      'archive-uuid',
      'base',
      'vol-size',
      'num-diff',
      'total-diff-size',
      'latest-snap',
    ],
  };

  /** One of WalB's `get` queries on a server; the answer as lines of text (as walbc prints them). */
  async get(serverId: string, target: string, args: string[] = []): Promise<string[]> {
    const { role, client } = this.server(serverId);
    if (!Controller.GET_TARGETS[role].includes(target))
      throw new WalbError(
        'INVALID_ARGUMENT',
        `the ${role} has no get target '${target}' (${Controller.GET_TARGETS[role].join(', ')})`,
      );
    if (target === 'host-type') return [role];
    if (target === 'vol') return (await client.ListVolumes({})).volumes.map((v) => v.volume);
    const volume = args[0];
    if (!volume) throw new WalbError('USAGE', `get ${target} needs a volume`);
    if (target === 'state') return [await this.getState(volume, serverId)];
    if (target === 'restorable')
      return (await this.getRestorable(volume, serverId, args[1] === 'all')).map(restorableLine);
    if (target === 'restored') return (await this.getRestored(volume, serverId)).map(String);
    if (target === 'is-wdiff-send-error')
      return [(await this.isWdiffSendError(volume, serverId, args[1] ?? this.primaryArchive)) ? '1' : '0'];
    if (target === 'is-overflow') return [(await this.isOverflow(volume, serverId)) ? '1' : '0'];
    const s = this.server(serverId);
    if (s.role === 'storage') {
      const st = await s.client.Status({ volume });
      switch (target) {
        case 'log-usage':
          return [`name:${volume}\tusage_pb:${st.logUsage}\tcapacity_pb:${st.logCapacity}`];
        case 'uuid':
          return [st.uuid];
        case 'latest-snap': {
          const q = st.queue.at(-1);
          return [`name:${volume}\tkind:storage\tgid:${q ? q.gid : st.doneGid}`];
        }
      }
    } else if (s.role === 'proxy') {
      const st = await s.client.Status({ volume });
      if (target === 'proxy-diff')
        return st.archives.map((a) => `${a.name}\t${a.pendingWdiffs}\t${a.pendingBytes}`);
    } else {
      const st = await s.client.Status({ volume });
      switch (target) {
        case 'uuid':
          return [st.storageUuid];
        case 'archive-uuid':
          return [st.archiveUuid];
        case 'base':
          return [st.base ? snapText(st.base) : ''];
        case 'vol-size':
          return [String(st.size)];
        case 'num-diff':
          return [String(st.diffs)];
        case 'total-diff-size':
          return [String(st.diffBytes)];
        case 'latest-snap':
          return [`name:${volume}\tkind:archive\tgid:${st.latest ? st.latest.gidE : ''}`];
      }
    }
    throw new WalbError('INTERNAL', `get ${target} on a ${role} is listed but not answered`);
  }

  /** WalB's init_storage: init-vol on one storage only (the volume's wdev on that host), then start standby. */
  async initStorage(volume: string, wdev: string, storage?: string): Promise<void> {
    const s = this.pick(this.storages, storage, 'storage')[1];
    await s.InitVol({ volume, wdev });
    await s.Start({ volume, mode: 'standby' });
  }

  /**
   * WalB's go_standby: the volume becomes Standby on a storage, from Target (stop force, reset-vol), Stopped
   * (reset-vol) or SyncReady; nothing when it is Standby already. Returns the state it was in.
   */
  async goStandby(volume: string, storage?: string): Promise<string> {
    const [sid, s] = this.pick(this.storages, storage, 'storage');
    const was = (await s.GetState({ volume })).state;
    if (was === 'Standby') return was;
    if (was === 'Target') await this.stop(volume, sid, { mode: 'force', wait: true });
    if (was === 'Target' || was === 'Stopped') await s.ResetVol({ volume });
    await s.Start({ volume, mode: 'standby' });
    return was;
  }

  /** Starts a volume on a server: a storage as target (or standby), a proxy, an archive. */
  async start(volume: string, serverId: string, mode?: string): Promise<string> {
    const s = this.server(serverId);
    const st =
      s.role === 'storage'
        ? await s.client.Start({ volume, mode: mode ?? 'target' })
        : await s.client.Start({ volume });
    return st.state;
  }

  /** Stops a volume on a server (graceful, force, or for a proxy empty: send everything first). */
  async stop(
    volume: string,
    serverId: string,
    opts: { mode?: string; wait?: boolean; progress?: (op: Operation__Output) => void } = {},
  ): Promise<Operation__Output> {
    const { client } = this.server(serverId);
    const op = await client.Stop({ volume, mode: opts.mode ?? 'graceful' });
    return opts.wait ? this.waitOperation(serverId, op, opts.progress) : op;
  }

  /** Back to SyncReady for a new full backup: a storage resets its log; an archive (stopped) drops its history. */
  async resetVolume(volume: string, serverId: string): Promise<string> {
    const s = this.server(serverId);
    if (s.role === 'proxy')
      throw new WalbError('INVALID_ARGUMENT', `${serverId} is a proxy: it has no reset-vol`);
    return (await s.client.ResetVol({ volume })).state;
  }

  /** Removes a volume from one server (its data there is deleted). */
  async clearVolume(volume: string, serverId: string): Promise<string> {
    return (await this.server(serverId).client.ClearVol({ volume })).state;
  }

  /** Archive registrations of a volume on proxies (all proxies when none is named). */
  async archiveInfo(
    action: 'add' | 'update' | 'delete' | 'list',
    volume: string,
    opts: {
      archive?: string;
      proxy?: string;
      address?: string;
      compression?: string;
      delaySec?: number;
    } = {},
  ): Promise<{ proxy: string; archives: unknown[] }[]> {
    const proxies = opts.proxy
      ? [[opts.proxy, this.pick(this.proxies, opts.proxy, 'proxy')[1]] as const]
      : [...this.proxies];
    const out: { proxy: string; archives: unknown[] }[] = [];
    for (const [pid, p] of proxies) {
      if (action === 'list') {
        const r = await p.ArchiveInfoList({ volume });
        out.push({ proxy: pid, archives: r.archives });
        continue;
      }
      if (!opts.archive) throw new WalbError('USAGE', `archive-info ${action} needs the archive's id`);
      if (action === 'delete') {
        await p.ArchiveInfoDelete({ volume, name: opts.archive });
      } else {
        const address = opts.address ?? this.layout.archives.find((a) => a.id === opts.archive)?.address;
        if (!address)
          throw new WalbError(
            'INVALID_ARGUMENT',
            `archive '${opts.archive}' is not in the layout (give --address)`,
          );
        const info = {
          volume,
          name: opts.archive,
          address,
          compression: opts.compression ?? '',
          delaySec: opts.delaySec ?? 0,
        };
        await (action === 'add' ? p.ArchiveInfoAdd(info) : p.ArchiveInfoUpdate(info));
      }
      out.push({ proxy: pid, archives: [] });
    }
    return out;
  }

  /**
   * WalB's copy_archive_info: the archive registrations of a volume on proxy `from` are made on proxy `to` too, and
   * the volume is started there, so that `to` can take the place of `from` (docs/servers.md §9.1).
   */
  async copyArchiveInfo(volume: string, from: string, to: string): Promise<string[]> {
    const source = this.pick(this.proxies, from, 'proxy')[1];
    const target = this.pick(this.proxies, to, 'proxy')[1];
    const { archives } = await source.ArchiveInfoList({ volume });
    if (archives.length === 0)
      throw new WalbError('NOT_FOUND', `${from} has no archive registered for ${volume}`);
    for (const a of archives)
      await target.ArchiveInfoAdd({
        volume,
        name: a.name,
        address: a.address,
        compression: a.compression,
        delaySec: a.delaySec,
      });
    if ((await target.GetState({ volume })).state === 'Stopped') await target.Start({ volume });
    return archives.map((a) => a.name);
  }

  private opsClient(serverId: string): Promised<OperationsClient> {
    this.server(serverId); // a clear error for an unknown id
    return this.ops.get(serverId)!;
  }

  async listOperations(serverId: string, opts: { volume?: string; finished?: boolean } = {}) {
    return (
      await this.opsClient(serverId).List({
        volume: opts.volume ?? '',
        finished: opts.finished === true,
      })
    ).operations;
  }

  async cancelOperation(serverId: string, id: string): Promise<Operation__Output> {
    return this.opsClient(serverId).Cancel({ id });
  }

  /** Follows an operation through the server's Watch stream until it ends; resolves with its last state. */
  watchOperation(
    serverId: string,
    id: string,
    onUpdate?: (op: Operation__Output) => void,
  ): Promise<Operation__Output> {
    const client = this.opsClient(serverId);
    return new Promise((resolve, reject) => {
      let last: Operation__Output | undefined;
      const stream = client.Watch({ id });
      stream.on('data', (op: Operation__Output) => {
        last = op;
        onUpdate?.(op);
      });
      stream.on('error', (err: grpc.ServiceError) => reject(fromServiceError(err)));
      stream.on('end', () =>
        last
          ? resolve(last)
          : reject(new WalbError('UNAVAILABLE', `the watch of operation ${id} ended empty`)),
      );
    });
  }

  /**
   * Waits for an operation through its Watch stream (no polling: a poll interval would add up to itself to every
   * timed transfer); `progress` sees every update.
   */
  async waitOperation(
    serverId: string,
    op: Operation__Output,
    progress?: (op: Operation__Output) => void,
  ): Promise<Operation__Output> {
    const cur = op.state === 'running' ? await this.watchOperation(serverId, op.id, progress) : op;
    if (cur.state !== 'done')
      throw new WalbError(
        isErrorCode(cur.errorCode) ? cur.errorCode : 'INTERNAL',
        `${cur.kind} of ${cur.volume} ${cur.state}: ${cur.error}`,
      );
    return cur;
  }

  async waitRestorable(
    volume: string,
    gid: number,
    archive = this.primaryArchive,
    timeoutMs = 600_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // Best effort, all at once and briefly: a proxy that is down or hung must not hold the wait up.
    await Promise.all([...this.proxies.values()].map((p) => p.Kick({ volume }, 3000).catch(() => undefined)));
    while (!(await this.getRestorable(volume, archive, true)).some((s) => s.gid === gid)) {
      if (Date.now() > deadline)
        throw new WalbError('UNAVAILABLE', `gid ${gid} of ${volume} is not restorable on ${archive} yet`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Full backup to the primary archive; with wait, returns once its snapshot is restorable. */
  async fullBackup(
    volume: string,
    opts: { storage?: string; wait?: boolean; progress?: (op: Operation__Output) => void } = {},
  ) {
    const [sid, s] = this.pick(this.storages, opts.storage, 'storage');
    const unsynchronized = await this.unsynchronizeSecondaries(volume);
    const op = await s.FullBackup({ volume });
    if (!opts.wait) return { operation: op, unsynchronized };
    const done = await this.waitOperation(sid, op, opts.progress);
    const gid = Number(done.result);
    await this.waitRestorable(volume, gid);
    return { operation: done, gid, unsynchronized };
  }

  /**
   * Hash backup to the primary archive (docs/servers.md §7.6), WalB's hash_backup: the storage's volume is brought
   * to SyncReady first (a Stopped one, e.g. after an overflow, is reset; a Standby one stopped); a Target one is
   * refused. With wait, returns once its snapshot is restorable.
   */
  async hashBackup(
    volume: string,
    opts: {
      storage?: string;
      wait?: boolean;
      chunkSize?: number;
      progress?: (op: Operation__Output) => void;
    } = {},
  ) {
    const [sid, s] = this.pick(this.storages, opts.storage, 'storage');
    const { state } = await s.GetState({ volume });
    if (state === 'Target')
      throw new WalbError(
        'FAILED_PRECONDITION',
        `${volume} is Target on ${sid}: a hash backup needs it stopped (walbc stop ${volume} ${sid}) or standby`,
      );
    if (state === 'Standby') await this.stop(volume, sid, { wait: true });
    if (state === 'Stopped') await s.ResetVol({ volume });
    const unsynchronized = await this.unsynchronizeSecondaries(volume);
    const op = await s.HashBackup({ volume, chunkSize: opts.chunkSize ?? 0 });
    if (!opts.wait) return { operation: op, unsynchronized };
    const done = await this.waitOperation(sid, op, opts.progress);
    const gid = Number(done.result);
    await this.waitRestorable(volume, gid);
    return { operation: done, gid, unsynchronized };
  }

  /**
   * WalB's backups stop the synchronizing of every secondary first: a full or hash backup starts a new history
   * (a new storage uuid), whose wdiffs a secondary would refuse. Returns the archives that were synchronizing; each
   * needs `walbc replicate VOL PRIMARY ARCHIVE --sync` again.
   */
  private async unsynchronizeSecondaries(volume: string): Promise<string[]> {
    const stopped: string[] = [];
    for (const a of this.layout.archives.slice(1))
      if ((await this.stopSynchronizing(volume, a.id)).length > 0) stopped.push(a.id);
    return stopped;
  }

  /** Whether `archive` is registered for the volume on each proxy of the layout that has the volume. */
  private async registrations(volume: string, archive: string) {
    const regs: { proxy: string; registered: boolean; state: string }[] = [];
    for (const [pid, p] of this.proxies) {
      const { state } = await p.GetState({ volume });
      if (state === 'Clear') continue;
      const { archives } = await p.ArchiveInfoList({ volume });
      regs.push({ proxy: pid, state, registered: archives.some((a) => a.name === archive) });
    }
    return regs;
  }

  /** Synchronizing: registered on every proxy that has the volume; half-registered is FAILED_PRECONDITION. */
  async isSynchronizing(volume: string, archive: string): Promise<boolean> {
    this.archiveAddress(archive);
    return isSynchronizing(volume, archive, await this.registrations(volume, archive));
  }

  /**
   * WalB's synchronize (docs/servers.md §9.1): every proxy that forwards the volume is stopped empty (no wdiff left
   * that the primary lacks), `archive` is registered on every proxy of the layout, a secondary is replicated from
   * the primary up to its latest, and the proxies are started again and the storages kicked. From then on every new
   * wdiff goes to `archive` too. The proxies are started again also when a step fails. A secondary registered
   * already loses its registrations first: wdiffs queued for it that it can no longer take (it lost its data) would
   * keep the proxies from ever being empty, and the replication brings it what they held. Its compression and
   * delay are kept.
   */
  async startSynchronizing(
    volume: string,
    archive: string,
    opts: { progress?: (op: Operation__Output) => void } = {},
  ): Promise<void> {
    const address = this.archiveAddress(archive);
    let kept: { compression: string; delaySec: number } | undefined;
    for (const [, p] of this.proxies)
      if (!kept && (await p.GetState({ volume })).state !== 'Clear')
        kept = (await p.ArchiveInfoList({ volume })).archives.find((a) => a.name === archive);
    if (archive !== this.primaryArchive) await this.stopSynchronizing(volume, archive);
    const toStart: Proxy[] = [];
    try {
      for (const [pid, p] of this.proxies) {
        const { state } = await p.GetState({ volume });
        if (state === 'Clear' || state === 'Stopped') continue;
        await this.stop(volume, pid, { mode: 'empty', wait: true });
        toStart.push(p);
      }
      for (const [, p] of this.proxies) {
        const { state } = await p.GetState({ volume });
        const known =
          state === 'Clear'
            ? undefined
            : (await p.ArchiveInfoList({ volume })).archives.find((a) => a.name === archive);
        const info = {
          volume,
          name: archive,
          address,
          compression: kept?.compression ?? '',
          delaySec: kept?.delaySec ?? 0,
        };
        await (known ? p.ArchiveInfoUpdate(info) : p.ArchiveInfoAdd(info));
        if (state === 'Clear') toStart.push(p);
      }
      if (archive !== this.primaryArchive)
        await this.replicate(volume, this.primaryArchive, archive, { wait: true, progress: opts.progress });
    } finally {
      for (const p of toStart) await p.Start({ volume });
    }
    await this.kickStorages();
  }

  /**
   * WalB's stop_synchronizing: on every proxy where `archive` is registered for the volume, stop force, delete the
   * registration, and start again when the volume was forwarding and other archives remain (deleting the last one
   * clears the volume there); then the storages are kicked. Returns the proxies it was deleted on.
   */
  async stopSynchronizing(volume: string, archive: string): Promise<string[]> {
    this.archiveAddress(archive);
    const done: string[] = [];
    for (const [pid, p] of this.proxies) {
      const { state } = await p.GetState({ volume });
      if (state === 'Clear') continue;
      const { archives } = await p.ArchiveInfoList({ volume });
      if (!archives.some((a) => a.name === archive)) continue;
      if (state !== 'Stopped') await this.stop(volume, pid, { mode: 'force', wait: true });
      await p.ArchiveInfoDelete({ volume, name: archive });
      if (state !== 'Stopped' && archives.length > 1) await p.Start({ volume });
      done.push(pid);
    }
    if (done.length > 0) await this.kickStorages();
    return done;
  }

  /** Every storage ships now (best effort: one that is down must not fail the verb that changed the proxies). */
  private async kickStorages(): Promise<void> {
    await Promise.all([...this.storages.values()].map((s) => s.Kick({}, 10_000).catch(() => undefined)));
  }

  /**
   * WalB's primary switch (docs/servers.md §9.1): every volume of the primary (or those named) is replicated to
   * `target` and made synchronizing there; then every storage of the layout must be restarted with `target` as its
   * archive — `say` tells the operator how, and this waits until each storage reports it (UNAVAILABLE after
   * `timeoutMs`); then the old primary stops synchronizing. The layout must list `target` first afterwards.
   */
  async switchPrimary(
    target: string,
    opts: {
      volumes?: string[];
      timeoutMs?: number;
      say?: (line: string) => void;
      progress?: (op: Operation__Output) => void;
    } = {},
  ): Promise<{ from: string; to: string; volumes: string[] }> {
    const from = this.primaryArchive;
    const address = this.archiveAddress(target);
    if (target === from) throw new WalbError('INVALID_ARGUMENT', `${target} is the primary archive already`);
    const say = opts.say ?? (() => undefined);
    const volumes =
      opts.volumes ??
      (await this.pick(this.archives, from, 'archive')[1].ListVolumes({})).volumes
        .filter((v) => v.state !== 'Clear')
        .map((v) => v.volume);
    for (const volume of volumes) {
      say(`${volume}: replicating ${from} -> ${target} and making ${target} synchronizing`);
      await this.replicate(volume, from, target, { wait: true, progress: opts.progress });
      await this.startSynchronizing(volume, target, { progress: opts.progress });
    }
    const storages = this.layout.storages.map((s) => s.id).join(', ');
    say(
      `now restart every storage (${storages}) with ${target} as its archive: WALB_ARCHIVE=${address} in ` +
        `/etc/walb/storage.env and systemctl restart walb-storage (or walb-storage --archive ${address}); waiting`,
    );
    await this.waitStorageArchive(address, opts.timeoutMs ?? 3_600_000);
    for (const volume of volumes) {
      say(`${volume}: ${from} stops synchronizing`);
      await this.stopSynchronizing(volume, from);
    }
    say(`done: ${target} is the primary archive; list ${target} first in the layout's archives now`);
    return { from, to: target, volumes };
  }

  /** Waits until every storage of the layout reports `address` as its archive (one that does not answer yet waits). */
  private async waitStorageArchive(address: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reported = await Promise.all(
        [...this.storages].map(async ([id, s]) => ({
          id,
          archive: await s
            .ListProxies({}, STATUS_TIMEOUT_MS)
            .then((r) => r.archive)
            .catch(() => 'unreachable'),
        })),
      );
      const behind = reported.filter((r) => r.archive !== address);
      if (behind.length === 0) return;
      if (Date.now() > deadline)
        throw new WalbError(
          'UNAVAILABLE',
          `storages still on another archive: ${behind.map((r) => `${r.id} (${r.archive})`).join(', ')}`,
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /**
   * WalB's secondary archive replacement (docs/servers.md §9.1): `from`'s copy of the volume is replicated to
   * `to`, which takes over its synchronizing; then `from` stops synchronizing and the volume is cleared there.
   * Returns whether it was synchronizing.
   */
  async replaceArchive(
    volume: string,
    from: string,
    to: string,
    opts: { progress?: (op: Operation__Output) => void } = {},
  ): Promise<{ synchronizing: boolean }> {
    this.archiveAddress(to);
    if (from === this.primaryArchive)
      throw new WalbError(
        'INVALID_ARGUMENT',
        `${from} is the primary archive: walbc switch-primary ${to} replaces it`,
      );
    const synchronizing = await this.isSynchronizing(volume, from);
    await this.replicate(volume, from, to, { wait: true, progress: opts.progress });
    if (synchronizing) {
      await this.startSynchronizing(volume, to, opts);
      await this.stopSynchronizing(volume, from);
    }
    const a = this.pick(this.archives, from, 'archive')[1];
    if ((await a.GetState({ volume })).state === 'Archived') await this.stop(volume, from, { wait: true });
    await a.ClearVol({ volume });
    return { synchronizing };
  }

  /**
   * Replicates a volume from archive `from` to archive `to` (docs/servers.md §7.7, §9.1): `to` gets InitVol when
   * Clear and is grown when smaller than `from`; then `Replicate` on `from`. With wait, returns once the operation
   * ended, with the destination's latest gid.
   */
  async replicate(
    volume: string,
    from: string,
    to: string,
    opts: {
      resync?: boolean;
      gid?: number;
      dontMerge?: boolean;
      wait?: boolean;
      progress?: (op: Operation__Output) => void;
    } = {},
  ) {
    if (from === to) throw new WalbError('INVALID_ARGUMENT', `replicate: ${from} to itself`);
    const [, src] = this.pick(this.archives, from, 'archive');
    const [, dst] = this.pick(this.archives, to, 'archive');
    const address = this.layout.archives.find((a) => a.id === to)!.address;
    if ((await dst.GetState({ volume })).state === 'Clear') await dst.InitVol({ volume });
    const [source, dest] = await Promise.all([src.Status({ volume }), dst.Status({ volume })]);
    if (dest.base && Number(dest.size) < Number(source.size))
      await dst.Resize({ volume, size: source.size, zeroClear: false });
    const op = await src.Replicate({
      volume,
      destination: address,
      gid: opts.gid ?? 0,
      resync: opts.resync === true,
      dontMerge: opts.dontMerge === true,
    });
    if (!opts.wait) return { operation: op };
    const done = await this.waitOperation(from, op, opts.progress);
    return { operation: done, gid: Number(done.result) };
  }

  /**
   * Grows a volume to `sizeLb` (docs/servers.md §9.1): every archive of the layout that has it first, then every
   * storage that has it, so that no proxy holds diffs larger than an archive. Returns each server's new size.
   */
  async resize(
    volume: string,
    sizeLb: number,
    opts: { zeroClear?: boolean } = {},
  ): Promise<{ server: string; size: number }[]> {
    const done: { server: string; size: number }[] = [];
    for (const [id, a] of this.archives) {
      if ((await a.GetState({ volume })).state === 'Clear') continue;
      const r = await a.Resize({ volume, size: sizeLb, zeroClear: opts.zeroClear === true });
      done.push({ server: id, size: r.size });
    }
    for (const [id, s] of this.storages) {
      if ((await s.GetState({ volume })).state === 'Clear') continue;
      done.push({ server: id, size: (await s.Resize({ volume, size: sizeLb })).size });
    }
    if (done.length === 0) throw new WalbError('NOT_FOUND', `no server of the layout has volume ${volume}`);
    return done;
  }

  async snapshot(volume: string, opts: { storage?: string; wait?: boolean } = {}): Promise<number> {
    const gid = Number((await this.pick(this.storages, opts.storage, 'storage')[1].Snapshot({ volume })).gid);
    if (opts.wait) await this.waitRestorable(volume, gid);
    return gid;
  }

  async restore(
    volume: string,
    gid: number,
    opts: { archive?: string; wait?: boolean; progress?: (op: Operation__Output) => void } = {},
  ) {
    const [aid, a] = this.pick(this.archives, opts.archive, 'archive');
    const op = await a.Restore({ volume, gid });
    return opts.wait ? this.waitOperation(aid, op, opts.progress) : op;
  }

  /** Applies the diffs up to snapshot `gid` into the archive's base image (docs/servers.md §6.6). */
  async apply(
    volume: string,
    gid: number,
    opts: { archive?: string; wait?: boolean; progress?: (op: Operation__Output) => void } = {},
  ) {
    const [aid, a] = this.pick(this.archives, opts.archive, 'archive');
    const op = await a.Apply({ volume, gid });
    return opts.wait ? this.waitOperation(aid, op, opts.progress) : op;
  }

  /**
   * Merges the mergeable diffs from gidBegin to gidEnd into one, or by size every run of mergeable diffs from the
   * oldest, each merged diff within maxBytes (docs/servers.md §6.6).
   */
  async merge(
    volume: string,
    range: { gidBegin: number; gidEnd: number } | { maxBytes: number },
    opts: { archive?: string; wait?: boolean; progress?: (op: Operation__Output) => void } = {},
  ) {
    const [aid, a] = this.pick(this.archives, opts.archive, 'archive');
    const op = await a.Merge({ volume, ...range });
    return opts.wait ? this.waitOperation(aid, op, opts.progress) : op;
  }

  /** Deletes the archive's wdiffs that no snapshot reaches; returns how many. */
  async gcDiff(volume: string, archive?: string): Promise<number> {
    return (await this.pick(this.archives, archive, 'archive')[1].GcDiff({ volume })).collected;
  }

  /** Makes snapshots implicit (`explicit` false) or explicit again (docs/servers.md §6.7). */
  async setSnapshotExplicit(
    volume: string,
    gids: number[],
    explicit: boolean,
    archive?: string,
  ): Promise<void> {
    const a = this.pick(this.archives, archive, 'archive')[1];
    await (explicit ? a.EnableSnapshot({ volume, gids }) : a.DisableSnapshot({ volume, gids }));
  }

  /** The restorable snapshots with what a restore of each reads and its last verification (docs/servers.md §6.9). */
  async backups(volume: string, archive?: string): Promise<BackupRow[]> {
    const r = await this.pick(this.archives, archive, 'archive')[1].ListBackups({ volume });
    return r.backups.map(backupRow);
  }

  /**
   * Reads snapshot `gid` virtually on the archive with every checksum checked and waits: the operation's result is
   * the snapshot's hash; a failed verification throws its code (docs/servers.md §6.9).
   */
  async verify(
    volume: string,
    gid: number,
    opts: { archive?: string; progress?: (op: Operation__Output) => void } = {},
  ): Promise<Operation__Output> {
    const [aid, a] = this.pick(this.archives, opts.archive, 'archive');
    return this.waitOperation(aid, await a.Verify({ volume, gid }), opts.progress);
  }

  /** Serves snapshot `gid` read-only over NBD from the archive (docs/servers.md §6.10). */
  async exportSnapshot(volume: string, gid: number, archive?: string) {
    return exportLine(await this.pick(this.archives, archive, 'archive')[1].Export({ volume, gid }));
  }

  async unexportSnapshot(volume: string, gid: number, archive?: string): Promise<void> {
    await this.pick(this.archives, archive, 'archive')[1].Unexport({ volume, gid });
  }

  async listExports(volume: string, archive?: string) {
    return (await this.pick(this.archives, archive, 'archive')[1].ListExports({ volume })).exports.map(
      exportLine,
    );
  }

  async delRestored(volume: string, gid: number, archive?: string): Promise<void> {
    await this.pick(this.archives, archive, 'archive')[1].DelRestored({ volume, gid });
  }

  async getRestorable(volume: string, archive?: string, all = false) {
    const r = await this.pick(this.archives, archive, 'archive')[1].GetRestorable({ volume, all });
    return r.snapshots.map((s) => ({
      gid: Number(s.gid),
      timestamp: Number(s.timestamp),
      explicit: s.explicit,
    }));
  }

  async getRestored(volume: string, archive?: string): Promise<number[]> {
    return (await this.pick(this.archives, archive, 'archive')[1].ListRestored({ volume })).gids.map(Number);
  }

  async isOverflow(volume: string, storage?: string): Promise<boolean> {
    return (await this.pick(this.storages, storage, 'storage')[1].IsOverflow({ volume })).overflow;
  }

  async isWdiffSendError(volume: string, proxy?: string, archive = this.primaryArchive): Promise<boolean> {
    return (await this.pick(this.proxies, proxy, 'proxy')[1].IsWdiffSendError({ volume, name: archive }))
      .value;
  }

  /**
   * Kicks every storage and proxy that answers; returns the ids of those that did not (with why), so that one
   * server being down does not keep the others waiting. Throws when none answered.
   */
  async kickAll(): Promise<{ id: string; error: string }[]> {
    const failed: { id: string; error: string }[] = [];
    const kicks = [
      ...[...this.storages].map(([id, c]) => ({ id, kick: () => c.Kick({}, 10_000) })),
      ...[...this.proxies].map(([id, c]) => ({ id, kick: () => c.Kick({}, 10_000) })),
    ];
    await Promise.all(
      kicks.map(({ id, kick }) => kick().catch((err: Error) => failed.push({ id, error: err.message }))),
    );
    if (failed.length === kicks.length)
      throw new WalbError(
        'UNAVAILABLE',
        `no server answered: ${failed.map((f) => `${f.id}: ${f.error}`).join('; ')}`,
      );
    return failed;
  }

  /**
   * One row per (server, volume): the whole group at a glance, or one volume. All servers (or those of `roles`)
   * are asked at once and briefly, so that one that hangs shows as UNREACHABLE after a few seconds instead of
   * holding the table.
   */
  async status(volume?: string, roles?: readonly StatusRow['role'][]): Promise<StatusRow[]> {
    const servers = this.allServers().filter((s) => !roles || roles.includes(s.role));
    const perServer = await Promise.all(
      servers.map(async (server): Promise<StatusRow[]> => {
        const { id, role } = server;
        try {
          const [list, ops] = await Promise.all([
            server.client.ListVolumes({}, STATUS_TIMEOUT_MS),
            this.opsClient(id).List({ volume: volume ?? '', finished: false }, STATUS_TIMEOUT_MS),
          ]);
          const vols = list.volumes.filter((v) => !volume || v.volume === volume);
          return Promise.all(
            vols.map(async (v) => ({
              server: id,
              role,
              volume: v.volume,
              state: v.state,
              actions: v.actions,
              operations: ops.operations
                .filter((o) => o.volume === v.volume && o.state === 'running')
                .map((o) => ({
                  id: o.id,
                  kind: o.kind,
                  done: Number(o.done),
                  total: Number(o.total),
                  startedMs: Number(o.startedMs),
                })),
              ...(await this.volumeFacts(server, v.volume).catch((e: unknown) => ({
                error: errorMessage(e),
              }))),
            })),
          );
        } catch (err) {
          return [
            {
              server: id,
              role,
              volume: volume ?? '-',
              state: 'UNREACHABLE',
              actions: [],
              operations: [],
              error: errorMessage(err),
            },
          ];
        }
      }),
    );
    return perServer.flat();
  }

  /**
   * Where each archive of each volume in `rows` (a status table) stands beside the primary: latest restorable
   * snapshot, synchronizing, and a secondary's lag (the archives table of `walbc status`). What cannot be read
   * shows as nothing restorable; the rows already name the server.
   */
  async archiveStandings(rows: readonly StatusRow[]): Promise<ArchiveStanding[]> {
    const volumes = [...new Set(rows.filter((r) => r.archive).map((r) => r.volume))];
    const perVolume = await Promise.all(
      volumes.map(async (volume) => {
        const side = async (r: StatusRow): Promise<ArchiveSide> => {
          const list = await this.archives
            .get(r.server)!
            .GetRestorable({ volume, all: true }, STATUS_TIMEOUT_MS)
            .then((x) => x.snapshots)
            .catch(() => []);
          const last = list.at(-1);
          return {
            archive: r.server,
            latestGid: r.archive!.latest?.gidE ?? 0,
            latest: last ? { gid: Number(last.gid), timestamp: Number(last.timestamp) } : null,
          };
        };
        const archiveRows = rows.filter((r) => r.volume === volume && r.archive);
        const primaryRow = archiveRows.find((r) => r.server === this.primaryArchive);
        const diffs = primaryRow
          ? await this.archives
              .get(primaryRow.server)!
              .Status({ volume }, STATUS_TIMEOUT_MS)
              .then((st) =>
                st.diffList.map((d) => ({ gidB: Number(d.snapB?.gidB ?? 0), bytes: Number(d.dataSize) })),
              )
              .catch(() => [])
          : [];
        const proxies = rows
          .filter((r) => r.volume === volume && r.proxy)
          .map((r) => ({
            proxy: r.server,
            queued: new Map(r.proxy!.archives.map((a) => [a.name, a.pendingBytes])),
          }));
        return archiveStandings(
          volume,
          primaryRow && (await side(primaryRow)),
          await Promise.all(archiveRows.filter((r) => r !== primaryRow).map(side)),
          diffs,
          proxies,
        );
      }),
    );
    return perVolume.flat();
  }

  private async volumeFacts(
    server: RoleServer,
    volume: string,
  ): Promise<Pick<StatusRow, 'storage' | 'proxy' | 'archive'>> {
    if (server.role === 'storage') {
      const s = await server.client.Status({ volume }, STATUS_TIMEOUT_MS);
      return {
        storage: {
          doneGid: Number(s.doneGid),
          queuedSnapshots: s.queue.length,
          logUsagePb: Number(s.logUsage),
          logCapacityPb: Number(s.logCapacity),
          overflow: s.overflow,
        },
      };
    }
    if (server.role === 'proxy') {
      const s = await server.client.Status({ volume }, STATUS_TIMEOUT_MS);
      return {
        proxy: {
          archives: s.archives.map((a) => ({
            name: a.name,
            pendingWdiffs: Number(a.pendingWdiffs),
            pendingBytes: Number(a.pendingBytes),
            sendError: a.sendError,
            queuedGids: a.queuedGids.map((r) => ({ begin: Number(r.begin), end: Number(r.end) })),
          })),
        },
      };
    }
    const [s, restorable] = await Promise.all([
      server.client.Status({ volume }, STATUS_TIMEOUT_MS),
      server.client.GetRestorable({ volume, all: false }, STATUS_TIMEOUT_MS),
    ]);
    // The recovery point as walb_archive_recovery_point_age_seconds has it: the newest restorable snapshot.
    const newest = restorable.snapshots.at(-1);
    const newestRestorable = newest ? { gid: Number(newest.gid), timestamp: Number(newest.timestamp) } : null;
    return {
      archive: {
        latest: s.latest ? { gidB: Number(s.latest.gidB), gidE: Number(s.latest.gidE) } : null,
        diffs: s.diffs,
        diffBytes: Number(s.diffBytes),
        restored: s.restored.map(Number),
        newestRestorable,
        recoveryPointAgeSec: newestRestorable
          ? Math.max(0, Math.round(Date.now() / 1000 - newestRestorable.timestamp))
          : null,
        disk: {
          base: Number(s.baseDiskBytes),
          diffs: Number(s.diffDiskBytes),
          restored: Number(s.restoredDiskBytes),
        },
        ...(s.maintenance ? { maintenance: s.maintenance } : {}),
      },
    };
  }

  async getState(volume: string, serverId: string): Promise<string> {
    return (await this.server(serverId).client.GetState({ volume })).state;
  }
}

/** An export as walbc prints it. */
export function exportLine(e: ExportReply__Output) {
  return {
    volume: e.volume,
    gid: Number(e.gid),
    name: e.name,
    uris: e.uris,
    size: Number(e.size),
    since: Number(e.since),
    connections: e.connections,
  };
}
