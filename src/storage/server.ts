// walb-storage: per volume, ships the logs of a wdev to the proxies (priority order, fail-over) and runs full
// backups to the primary archive (docs/servers.md §4, §7.1, §7.3). The device is reached through walb-wdevd's
// control API and by reading its log and data devices.
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { readJson, writeJsonAtomic } from '../common/atomic-file';
import { Backoff } from '../common/backoff';
import { WalbError, cancelled, errorCode, errorMessage } from '../common/errors';
import { ForegroundSlots } from '../common/foreground';
import {
  channelCredentials,
  connect,
  loadProto,
  stopGrpcServer,
  tlsPem,
  unary,
  withPort,
  type Promised,
} from '../common/grpc';
import type { Logger } from '../common/log';
import { nextGid, type LsidGid } from '../common/meta';
import { OperationRegistry } from '../common/operations';
import { startRoleServer } from '../common/role-server';
import { VolumeState, type Edge } from '../common/state-machine';
import { TaskQueue, type TaskResult } from '../common/task-queue';
import { FULL_SYNC_BULK, fileBulks, runTransfer, sendBulks } from '../common/transfer';
import { checkVolumeName } from '../common/volume-name';
import type { StorageConfig } from '../config/storage';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { Accepted__Output } from '../generated/walb/v1/Accepted';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { FullSyncRequest } from '../generated/walb/v1/FullSyncRequest';
import type { StorageHandlers } from '../generated/walb/v1/Storage';
import { native } from '../native';
import { WdevClient, type WdevStatusReply } from '../wdev/client';
import { ProxyMonitor } from './proxy-monitor';

type State =
  | 'Clear'
  | 'SyncReady'
  | 'Stopped'
  | 'Target'
  | 'InitVol'
  | 'ClearVol'
  | 'FullSync'
  | 'StartTarget'
  | 'StopTarget'
  | 'Reset';

// docs/servers.md §4.2 (standby and hash backup come later).
const EDGES: Edge<State>[] = [
  { from: 'Clear', via: 'InitVol', to: 'SyncReady' },
  { from: 'SyncReady', via: 'ClearVol', to: 'Clear' },
  { from: 'SyncReady', via: 'FullSync', to: 'Stopped' },
  { from: 'Stopped', via: 'Reset', to: 'SyncReady' },
  { from: 'Stopped', via: 'StartTarget', to: 'Target' },
  { from: 'Target', via: 'StopTarget', to: 'Stopped' },
];

interface VolumeFile {
  version: 1;
  state: 'SyncReady' | 'Stopped' | 'Target';
  wdev: string;
  uuid: string;
  /** Last position a proxy acknowledged; lsid -1 until the first full backup. */
  done: LsidGid;
  /** Snapshot records not shipped yet, oldest first. */
  queue: LsidGid[];
}

interface Volume {
  name: string;
  file: string;
  state: VolumeState<State>;
  meta: VolumeFile;
  /** Metadata updates run one after another, each on the newest metadata (no lost updates). */
  lock: Promise<unknown>;
}

const SHIPPING: State[] = ['Target', 'FullSync'];
const NO_DONE: LsidGid = { lsid: -1, gid: -1, isMergeable: false, timestamp: 0 };
const BULK = 1 << 20;
/** FullSyncRequest.data's field number (proto/walb/v1/archive.proto): full-backup bulks are built pre-encoded. */
const FULL_SYNC_DATA_FIELD = 2;
const now = () => Math.floor(Date.now() / 1000);

export class StorageServer {
  private readonly volumes = new Map<string, Volume>();
  private readonly ops = new OperationRegistry();
  private readonly queue: TaskQueue<string>;
  private readonly wdevd: WdevClient;
  private readonly proxies: ProxyMonitor;
  private readonly archiveClient: Promised<ArchiveClient>;
  private readonly backoff: Backoff<string>;
  private server: grpc.Server | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private readonly foreground: ForegroundSlots;
  port = 0;

  constructor(
    readonly config: StorageConfig,
    private readonly log: Logger,
  ) {
    this.wdevd = new WdevClient(config.wdevdSocket, 30_000);
    this.proxies = new ProxyMonitor(
      config.proxies,
      {
        intervalMs: config.proxyHeartbeatSec * 1000,
        timeoutMs: config.proxyHeartbeatTimeoutSec * 1000,
        credentials: channelCredentials(config.tls),
      },
      log,
      () => this.retryAllNow(),
    );
    this.archiveClient = connect(
      loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive,
      config.archive,
      channelCredentials(config.tls),
    );
    this.foreground = new ForegroundSlots(config.maxForegroundTasks);
    this.backoff = new Backoff(config.retryDelaySec * 1000, config.maxRetryDelaySec * 1000);
    this.queue = new TaskQueue<string>(
      Math.max(1, config.backgroundTasks),
      (v) => this.wlogTask(v),
      (v, err) => {
        const next = this.backoff.next(v);
        this.log('warn', 'wlog-send-failed', { volume: v, error: errorMessage(err), retryInMs: next });
        return next;
      },
    );
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.config.dataDir, { recursive: true });
    for (const name of fs.readdirSync(this.config.dataDir)) {
      const file = path.join(this.config.dataDir, name, 'volume.json');
      const meta = await readJson<VolumeFile>(file);
      if (!meta) continue;
      const v = this.newVolume(name, meta.state, meta);
      this.volumes.set(name, v);
      if (meta.state === 'Target') this.queue.push(name);
    }
    // The driver would wake us through sysfs; walb-wdevd is polled once a second instead.
    this.ticker = setInterval(() => {
      for (const v of this.volumes.values()) if (SHIPPING.includes(v.state.state)) this.queue.push(v.name, 0);
    }, 1000);
    this.ticker.unref();
    this.proxies.start();
    const { server, port } = await startRoleServer(
      this.config.listen,
      'Storage',
      this.handlers(),
      this.ops,
      this.config.tls,
    );
    this.server = server;
    this.port = port;
    this.log('info', 'started', {
      listen: this.config.listen,
      port,
      archive: this.config.archive,
      proxies: this.config.proxies,
    });
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    await this.queue.stop();
    if (this.server) await stopGrpcServer(this.server, 5000);
    this.wdevd.close();
    this.proxies.stop();
    this.archiveClient.close();
    this.log('info', 'stopped', {});
  }

  private newVolume(name: string, initial: State, meta: VolumeFile): Volume {
    const file = path.join(this.config.dataDir, name, 'volume.json');
    const v: Volume = {
      name,
      file,
      meta,
      state: undefined as unknown as VolumeState<State>,
      lock: Promise.resolve(),
    };
    v.state = new VolumeState<State>(name, EDGES, initial, async (s) => {
      if (s !== 'Clear')
        await this.update(v, (m) => ({ meta: { ...m, state: s as VolumeFile['state'] }, result: undefined }));
    });
    return v;
  }

  /** Applies `fn` to the newest metadata and writes the result atomically, one update at a time per volume. */
  private update<R>(v: Volume, fn: (m: VolumeFile) => { meta: VolumeFile; result: R }): Promise<R> {
    const run = v.lock.then(async () => {
      const { meta, result } = fn(v.meta);
      if (meta !== v.meta) {
        await writeJsonAtomic(v.file, meta);
        v.meta = meta;
      }
      return result;
    });
    v.lock = run.catch(() => undefined);
    return run;
  }

  private resetRecords(v: Volume, uuid: string): Promise<void> {
    return this.update(v, (m) => ({
      meta: { ...m, uuid, done: { lsid: 0, gid: 0, isMergeable: false, timestamp: now() }, queue: [] },
      result: undefined,
    }));
  }

  /** Queues a snapshot record at `lsid` (gid allocated on the newest metadata). */
  private addSnapshot(v: Volume, st: WdevStatusReply, lsid: number, isMergeable: boolean): Promise<LsidGid> {
    return this.update(v, (m) => {
      const rec = this.snapshotIn(m, st, lsid, isMergeable);
      return { meta: { ...m, queue: [...m.queue, rec] }, result: rec };
    });
  }

  private volume(name: string): Volume {
    checkVolumeName(name);
    const v = this.volumes.get(name);
    if (!v) throw new WalbError('NOT_FOUND', `no volume ${name} on this storage`);
    return v;
  }

  private volumeState(v: Volume) {
    return { volume: v.name, state: v.state.state, actions: v.state.runningActions() };
  }

  private pbs(st: WdevStatusReply): number {
    return st.pbs || 512;
  }

  private maxSendPb(st: WdevStatusReply): number {
    return Math.max(1, Math.floor((this.config.maxWlogSendMb * 2 ** 20) / this.pbs(st)));
  }

  /** A snapshot record at lsid after the newest one of `m` (docs/servers.md §2.7). */
  private snapshotIn(m: VolumeFile, st: WdevStatusReply, lsid: number, isMergeable: boolean): LsidGid {
    const prev = m.queue.at(-1) ?? m.done;
    const gid = nextGid(prev, Math.max(lsid, prev.lsid), this.maxSendPb(st));
    return { lsid: Math.max(lsid, prev.lsid), gid, isMergeable, timestamp: now() };
  }

  private handlers(): StorageHandlers {
    return {
      InitVol: unary(async (req) => {
        checkVolumeName(req.volume);
        if (!req.wdev) throw new WalbError('INVALID_ARGUMENT', 'wdev is required');
        for (const o of this.volumes.values())
          if (o.meta.wdev === req.wdev)
            throw new WalbError('FAILED_PRECONDITION', `wdev ${req.wdev} belongs to volume ${o.name}`);
        if (this.volumes.has(req.volume))
          throw new WalbError('ALREADY_EXISTS', `volume ${req.volume} exists`);
        await this.wdevd.status(req.wdev); // must exist
        const meta: VolumeFile = {
          version: 1,
          state: 'SyncReady',
          wdev: req.wdev,
          uuid: '',
          done: NO_DONE,
          queue: [],
        };
        const v = this.newVolume(req.volume, 'Clear', meta);
        await v.state.transact('InitVol', async () => {
          await fs.promises.mkdir(path.dirname(v.file), { recursive: true });
          await writeJsonAtomic(v.file, meta);
        });
        this.volumes.set(req.volume, v);
        return this.volumeState(v);
      }),
      ClearVol: unary(async (req) => {
        const v = this.volume(req.volume);
        await v.state.transact('ClearVol', () =>
          fs.promises.rm(path.dirname(v.file), { recursive: true, force: true }),
        );
        this.volumes.delete(req.volume);
        return { volume: req.volume, state: 'Clear', actions: [] };
      }),
      ResetVol: unary(async (req) => {
        const v = this.volume(req.volume);
        await v.state.transact('Reset', async () => {
          const st = await this.wdevd.resetWal(v.meta.wdev);
          await this.resetRecords(v, st.uuid);
        });
        return this.volumeState(v);
      }),
      FullBackup: unary(async (req) => {
        const v = this.volume(req.volume);
        v.state.require(['SyncReady'], 'full-bkp');
        const release = this.foreground.take();
        return this.ops.start('full-backup', v.name, async (op) => {
          try {
            return await this.fullBackup(v, req.bulk || BULK, op);
          } finally {
            release();
          }
        });
      }),
      Start: unary(async (req) => {
        const v = this.volume(req.volume);
        if (req.mode && req.mode !== 'target')
          throw new WalbError('UNSUPPORTED', 'standby is not implemented yet');
        const st = await this.wdevd.status(v.meta.wdev);
        if (st.overflow)
          throw new WalbError(
            'FAILED_PRECONDITION',
            `wdev ${v.meta.wdev} overflowed: reset-vol and a full backup`,
          );
        await v.state.transact('StartTarget', async () => undefined);
        this.queue.push(v.name);
        return this.volumeState(v);
      }),
      Stop: unary(async (req) => {
        const v = this.volume(req.volume);
        v.state.require(['Target'], 'stop');
        return this.ops.start('stop', v.name, async () => {
          v.state.stop = req.mode === 'force' ? 'force-stopping' : 'stopping';
          try {
            await v.state.waitUntilIdle();
            this.queue.remove(v.name);
            await v.state.transact('StopTarget', async () => undefined);
          } finally {
            v.state.stop = 'not-stopping';
          }
        });
      }),
      Snapshot: unary(async (req) => {
        const v = this.volume(req.volume);
        v.state.require(['Target', 'Stopped'], 'snapshot');
        const st = await this.wdevd.status(v.meta.wdev);
        if (st.overflow) throw new WalbError('FAILED_PRECONDITION', `wdev ${v.meta.wdev} overflowed`);
        const rec = await this.addSnapshot(v, st, st.lsids!.latest, false);
        this.queue.pushForce(v.name, 0);
        this.log('info', 'snapshot', { volume: v.name, gid: rec.gid, lsid: rec.lsid });
        return { gid: rec.gid, timestamp: rec.timestamp, explicit: true };
      }),
      Kick: unary(async () => {
        await this.proxies.kick();
        this.retryAllNow();
        return {};
      }),
      ListProxies: unary(async () => ({
        proxies: this.proxies.list().map((p) => ({ ...p, lastCheck: Math.floor(p.lastCheck / 1000) })),
      })),
      GetState: unary(async (req) => {
        const v = this.volumes.get(req.volume);
        return v ? this.volumeState(v) : { volume: req.volume, state: 'Clear', actions: [] };
      }),
      IsOverflow: unary(async (req) => ({
        overflow: (await this.wdevd.status(this.volume(req.volume).meta.wdev)).overflow,
      })),
      ListVolumes: unary(async () => ({
        volumes: [...this.volumes.values()].map((v) => this.volumeState(v)),
      })),
      Status: unary(async (req) => {
        const v = this.volume(req.volume);
        const st = await this.wdevd.status(v.meta.wdev);
        return {
          state: this.volumeState(v),
          wdev: v.meta.wdev,
          uuid: v.meta.uuid,
          doneLsid: Math.max(0, v.meta.done.lsid),
          doneGid: Math.max(0, v.meta.done.gid),
          queue: v.meta.queue.map((q) => ({ gid: q.gid, timestamp: q.timestamp, explicit: !q.isMergeable })),
          logUsage: st.logUsage,
          logCapacity: st.logCapacity,
          overflow: st.overflow,
          size: st.deviceSize,
        };
      }),
    };
  }

  /** Every delayed wlog task runs now, whatever its back-off. */
  private retryAllNow(): void {
    this.backoff.clear();
    this.queue.kickAll();
    for (const v of this.volumes.values()) if (v.state.state === 'Target') this.queue.pushForce(v.name, 0);
  }

  /** Full backup (docs/servers.md §7.3): reset the log, scan the data device to the archive, explicit snapshot. */
  private async fullBackup(
    v: Volume,
    bulk: number,
    op: { progress(d: number, t?: number): void; signal: AbortSignal },
  ): Promise<string> {
    let gidE = 0;
    await v.state.transact('FullSync', async () => {
      // The log restarts at lsid 0 with a new uuid; everything written from now on reaches the archive as diffs
      // (the image scanned below is dirty until they are applied).
      const st = await this.wdevd.resetWal(v.meta.wdev);
      await this.resetRecords(v, st.uuid);
      const size = st.deviceSize * 512;
      const startedAt = now();
      const fh = await fs.promises.open(st.ddev, 'r');
      let bulkBytes = 0;
      try {
        const result = await runTransfer(
          this.archiveClient.FullSync(),
          { header: { volume: v.name, size: st.deviceSize, storageUuid: st.uuid, timestamp: startedAt } },
          (accepted) =>
            this.fullSyncBulks(
              v.name,
              { path: st.ddev, fh, size },
              bulk,
              accepted,
              op,
              (n) => (bulkBytes = n),
            ),
          // The end is built after the scan: the explicit snapshot at the latest lsid then; the base is
          // |0, gidE|, clean once the diffs up to gidE are applied.
          async () => {
            const st2 = await this.wdevd.status(v.meta.wdev);
            const rec = await this.addSnapshot(v, st2, st2.lsids!.latest, false);
            gidE = rec.gid;
            return { end: { snapshot: { gidB: 0, gidE }, bulkBytes } };
          },
          { idleTimeoutMs: this.config.socketTimeoutSec * 1000 },
        );
        if (!result.ok)
          throw new WalbError(
            'FAILED_PRECONDITION',
            `the archive refused the full backup: ${result.reason} ${result.message}`,
          );
      } finally {
        await fh.close();
      }
    });
    await v.state.transact('StartTarget', async () => undefined);
    this.queue.pushForce(v.name, 0);
    this.log('info', 'full-backup-done', { volume: v.name, gid: gidE });
    return String(gidE);
  }

  /**
   * The bytes of a full backup: through the archive's bulk port when its Accepted names one (the addon reads and
   * sends from its own threads; `viaBulk` gets the count), else as bulk messages on the FullSync stream.
   */
  private async *fullSyncBulks(
    volume: string,
    ddev: { path: string; fh: fs.promises.FileHandle; size: number },
    bulk: number,
    accepted: Accepted__Output,
    op: { progress(d: number, t?: number): void; signal: AbortSignal },
    viaBulk: (bytes: number) => void,
  ): AsyncIterable<FullSyncRequest> {
    const scanRate = this.config.fullScanBytesPerSec;
    if (accepted.bulkPort) {
      const target = withPort(this.config.archive, accepted.bulkPort);
      const r = await sendBulks(
        {
          target,
          method: FULL_SYNC_BULK,
          token: accepted.bulkToken,
          path: ddev.path,
          size: ddev.size,
          bulk,
          bytesPerSec: scanRate,
          timeoutSec: this.config.socketTimeoutSec,
          tls: tlsPem(this.config.tls),
        },
        op,
      );
      if ('sent' in r) return viaBulk(r.sent);
      // A firewall or a forwarded address: the main port still works, only slower.
      this.log('warn', 'bulk-port-unreachable', {
        volume,
        target,
        error: r.unreachable,
        hint: "open the archive's bulkListen port to the storage, or set it to off",
      });
    }
    let scanned = 0;
    for await (const b of fileBulks(ddev.fh, ddev.size, bulk, FULL_SYNC_DATA_FIELD, 4, scanRate)) {
      if (op.signal.aborted) throw cancelled();
      scanned += b.length;
      op.progress(scanned, ddev.size);
      // Zero bulks stay holes on the archive.
      if (b.message) yield b.message as unknown as FullSyncRequest;
    }
  }

  // ---- wlog shipping (docs/servers.md §7.1) ----

  private async freeLog(v: Volume, st: WdevStatusReply): Promise<WdevStatusReply> {
    const done = v.meta.done.lsid;
    if (done <= st.lsids!.oldest) return st;
    if (done > st.lsids!.prevWritten) st = await this.wdevd.takeCheckpoint(v.meta.wdev);
    const to = Math.min(done, st.lsids!.prevWritten);
    return to > st.lsids!.oldest ? this.wdevd.setOldestLsid(v.meta.wdev, to) : st;
  }

  private async wlogTask(name: string): Promise<TaskResult> {
    const v = this.volumes.get(name);
    // Logs flow during a full backup too (the archive answers the proxy "syncing" until the base is there).
    if (!v || !SHIPPING.includes(v.state.state) || v.state.stop !== 'not-stopping') return { again: false };
    const end = v.state.beginAction('WlogSend');
    try {
      let st = await this.wdevd.status(v.meta.wdev);
      if (st.overflow) {
        this.log('error', 'overflow', { volume: name, wdev: v.meta.wdev });
        if (v.state.state === 'Target') await v.state.transact('StopTarget', async () => undefined);
        return { again: false };
      }
      st = await this.freeLog(v, st);
      const l = st.lsids!;
      const { done, queue } = await this.update(v, (m) => {
        let q = m.queue.filter((r) => r.gid > m.done.gid);
        // An implicit snapshot when nothing is queued but logs are, or the newest record is old and behind.
        const newest = q.at(-1);
        if (
          (!newest && l.latest > m.done.lsid) ||
          (newest && now() - newest.timestamp >= this.config.snapshotIntervalSec && newest.lsid < l.latest)
        ) {
          q = [...q, this.snapshotIn({ ...m, queue: q }, st, l.latest, true)];
        }
        const changed = q.length !== m.queue.length || q.some((r, i) => r !== m.queue[i]);
        return { meta: changed ? { ...m, queue: q } : m, result: { done: m.done, queue: q } };
      });
      if (queue.length === 0) return { again: false };
      // The end record: the oldest, extended over implicit ones within -wl and below permanent.
      const maxPb = this.maxSendPb(st);
      let endRec = queue[0];
      for (const q of queue.slice(1)) {
        if (!endRec.isMergeable || q.lsid - done.lsid > maxPb || q.lsid > l.permanent) break;
        endRec = q;
      }
      const whole = endRec.gid === done.gid + 1 || endRec.lsid - done.lsid <= maxPb;
      const limit = whole ? endRec.lsid : done.lsid + maxPb;
      if (l.permanent < limit) return { again: true, delayMs: 100 };
      await this.sendRange(v, st, done, endRec, limit, whole);
      this.backoff.reset(name);
      return { again: true, delayMs: 0 };
    } finally {
      end();
    }
  }

  private async sendRange(
    v: Volume,
    st: WdevStatusReply,
    done: LsidGid,
    endRec: LsidGid,
    limit: number,
    whole: boolean,
  ): Promise<void> {
    const snapE = whole ? endRec.gid : done.gid + 1;
    const header = {
      header: {
        volume: v.name,
        storageUuid: v.meta.uuid,
        pbs: this.pbs(st),
        salt: 0,
        size: st.deviceSize,
        beginLsid: done.lsid,
        maxLogPb: limit - done.lsid,
      },
    };
    // A whole range ends at a snapshot, a pack boundary; a capped one stops before the pack that would pass
    // the cap (never splitting a pack). The salt for the wlog header comes with the first chunk.
    const mode = whole ? 'exact' : 'up-to';
    const first = await native.ldevReadLogs(st.ldev, {
      beginLsid: done.lsid,
      endLsid: limit,
      maxBytes: 4 << 20,
      end: whole ? 'exact' : 'up-to-at-least-one',
    });
    header.header.salt = first.super.salt;
    const ldev = st.ldev;
    let reached = first.nextLsid;
    const body = async function* () {
      let chunk = first;
      for (;;) {
        // Messages of at most 1 MiB whatever the packs (the proxy only appends the bytes).
        for (let off = 0; off < chunk.data.length; off += 1 << 20)
          yield { packs: chunk.data.subarray(off, off + (1 << 20)) };
        if (chunk.nextLsid >= limit) return;
        const next = await native.ldevReadLogs(ldev, {
          beginLsid: chunk.nextLsid,
          endLsid: limit,
          maxBytes: 4 << 20,
          end: mode,
        });
        if (next.packs === 0) return;
        chunk = next;
        reached = chunk.nextLsid;
      }
    };
    const endMsg = async () => ({
      end: {
        endLsid: reached,
        diff: {
          snapB: { gidB: done.gid, gidE: done.gid },
          snapE: { gidB: snapE, gidE: snapE },
          mergeable: done.isMergeable,
          timestamp: endRec.timestamp,
        },
      },
    });
    const errors: string[] = [];
    // The available proxies in priority order (docs/servers.md §7.1 step 3): the first that accepts wins.
    for (const i of this.proxies.available()) {
      const address = this.proxies.address(i);
      try {
        const r = await runTransfer(this.proxies.client(i).SendWlog(), header, body, endMsg, {
          idleTimeoutMs: this.config.socketTimeoutSec * 1000,
        });
        if (!r.ok) {
          errors.push(`${address}: ${r.reason} ${r.message}`);
          continue;
        }
      } catch (err) {
        errors.push(`${address}: ${errorMessage(err)}`);
        if (errorCode(err) === 'UNAVAILABLE') this.proxies.markDown(i, errorMessage(err));
        continue;
      }
      // Acknowledged: the done record moves, consumed records go, the log below it is freed.
      const newDone: LsidGid = whole
        ? { lsid: reached, gid: snapE, isMergeable: endRec.isMergeable, timestamp: endRec.timestamp }
        : { lsid: reached, gid: snapE, isMergeable: true, timestamp: done.timestamp };
      await this.update(v, (m) => ({
        meta: { ...m, done: newDone, queue: m.queue.filter((q) => q.gid > newDone.gid) },
        result: undefined,
      }));
      this.log('info', 'wlog-sent', {
        volume: v.name,
        proxy: address,
        lsids: [done.lsid, reached],
        gids: [done.gid, snapE],
      });
      await this.freeLog(v, await this.wdevd.status(v.meta.wdev));
      return;
    }
    throw new WalbError(
      'UNAVAILABLE',
      errors.length === 0
        ? `no proxy is available for the logs of ${v.name} (waiting for a heartbeat)`
        : `no proxy took the logs of ${v.name}: ${errors.join('; ')}`,
    );
  }
}
