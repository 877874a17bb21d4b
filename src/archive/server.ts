// walb-archive: the gRPC Archive service over the file backend (volume-store.ts). Receives full backups from
// storages and wdiffs from proxies, keeps the restorable snapshots, restores them into image files.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { WalbError, errorMessage } from '../common/errors';
import { ForegroundSlots } from '../common/foreground';
import { stopGrpcServer, tlsPem, unary, withPort } from '../common/grpc';
import type { Logger } from '../common/log';
import { diff, snap, snapText, type MetaSnap } from '../common/meta';
import { OperationRegistry } from '../common/operations';
import { startRoleServer } from '../common/role-server';
import { FULL_SYNC_BULK, serveTransfer } from '../common/transfer';
import { VolumeState, type Edge } from '../common/state-machine';
import { checkVolumeName } from '../common/volume-name';
import type { ArchiveConfig } from '../config/archive';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { FullSyncRequest__Output } from '../generated/walb/v1/FullSyncRequest';
import type { TransferReply } from '../generated/walb/v1/TransferReply';
import type { WdiffRequest__Output } from '../generated/walb/v1/WdiffRequest';
import { native, type BulkReceiver } from '../native';
import { ArchiveVolumeStore, type ArchiveSteadyState } from './volume-store';

type State =
  | 'Clear'
  | ArchiveSteadyState
  | 'InitVol'
  | 'ClearVol'
  | 'ResetVol'
  | 'FullSync'
  | 'WdiffRecv'
  | 'Stop'
  | 'Start';

// docs/servers.md §6.2 (the states this backend has so far).
const EDGES: Edge<State>[] = [
  { from: 'Clear', via: 'InitVol', to: 'SyncReady' },
  { from: 'SyncReady', via: 'ClearVol', to: 'Clear' },
  { from: 'Stopped', via: 'ClearVol', to: 'Clear' },
  { from: 'SyncReady', via: 'FullSync', to: 'Archived' },
  { from: 'Archived', via: 'WdiffRecv', to: 'Archived' },
  { from: 'Archived', via: 'Stop', to: 'Stopped' },
  { from: 'Stopped', via: 'Start', to: 'Archived' },
  { from: 'SyncReady', via: 'ResetVol', to: 'SyncReady' },
  { from: 'Stopped', via: 'ResetVol', to: 'SyncReady' },
];
const ACTIVE: State[] = ['Archived', 'WdiffRecv'];

type Stream<Req> = grpc.ServerDuplexStream<Req, TransferReply>;

interface Volume {
  state: VolumeState<State>;
  store?: ArchiveVolumeStore;
}

export class ArchiveServer {
  private readonly volumes = new Map<string, Volume>();
  private readonly ops = new OperationRegistry();
  private server: grpc.Server | undefined;
  /** Full-backup bytes arrive here, off the JS thread (docs/servers.md §7.4); undefined when off. */
  private bulk: BulkReceiver | undefined;
  private readonly foreground: ForegroundSlots;
  port = 0;

  constructor(
    readonly config: ArchiveConfig,
    private readonly log: Logger,
  ) {
    this.foreground = new ForegroundSlots(config.maxForegroundTasks);
  }

  /** Loads every volume (recovering from a crash); an inconsistent one stops the start with its reason. */
  async start(): Promise<void> {
    fs.mkdirSync(this.config.dataDir, { recursive: true });
    for (const name of fs.readdirSync(this.config.dataDir)) {
      if (!fs.existsSync(path.join(this.config.dataDir, name, 'meta.json'))) continue;
      const store = await ArchiveVolumeStore.open(this.config.dataDir, name);
      this.volumes.set(name, { state: this.newState(name, store.state, store), store });
    }
    const { server, port } = await startRoleServer(
      this.config.listen,
      'Archive',
      this.handlers(),
      this.ops,
      this.config.tls,
    );
    this.server = server;
    this.port = port;
    this.bulk = this.startBulkReceiver();
    this.log('info', 'started', {
      listen: this.config.listen,
      port,
      bulkPort: this.bulk?.port() ?? 'off',
      volumes: [...this.volumes.keys()],
    });
  }

  private startBulkReceiver(): BulkReceiver | undefined {
    const at = this.config.bulkListen;
    if (at === 'off') return undefined;
    const listen = at || withPort(this.config.listen, 0);
    try {
      return new native.BulkReceiver({ listen, method: FULL_SYNC_BULK, tls: tlsPem(this.config.tls) });
    } catch (err) {
      throw new WalbError('CONFIG', `bulkListen: cannot listen on ${listen}: ${errorMessage(err)}`);
    }
  }

  async stop(): Promise<void> {
    if (this.server) await stopGrpcServer(this.server, 5000);
    this.bulk?.close();
    this.bulk = undefined;
    this.log('info', 'stopped', {});
  }

  private newState(volume: string, initial: State, store?: ArchiveVolumeStore): VolumeState<State> {
    return new VolumeState<State>(volume, EDGES, initial, async (s) => {
      const st = store ?? this.volumes.get(volume)?.store;
      if (st && s !== 'Clear') await st.setState(s as ArchiveSteadyState);
    });
  }

  private volume(name: string): Volume {
    checkVolumeName(name);
    const v = this.volumes.get(name);
    if (!v) throw new WalbError('NOT_FOUND', `no volume ${name} on this archive`);
    return v;
  }

  private store(v: Volume): ArchiveVolumeStore {
    if (!v.store) throw new WalbError('FAILED_PRECONDITION', `volume ${v.state.volume} is Clear`);
    return v.store;
  }

  private volumeState(v: Volume) {
    return { volume: v.state.volume, state: v.state.state, actions: v.state.runningActions() };
  }

  private handlers(): ArchiveHandlers {
    return {
      InitVol: unary(async (req) => {
        checkVolumeName(req.volume);
        let v = this.volumes.get(req.volume);
        if (!v) {
          v = { state: this.newState(req.volume, 'Clear') };
          this.volumes.set(req.volume, v);
        }
        const vol = v;
        await vol.state.transact('InitVol', async () => {
          vol.store = await ArchiveVolumeStore.init(this.config.dataDir, req.volume);
        });
        this.log('info', 'init-vol', { volume: req.volume });
        return this.volumeState(vol);
      }),
      ClearVol: unary(async (req) => {
        const v = this.volume(req.volume);
        if (v.state.runningActions().length)
          throw new WalbError('FAILED_PRECONDITION', `volume ${req.volume} is busy`);
        await v.state.transact('ClearVol', async () => {
          await fs.promises.rm(path.join(this.config.dataDir, req.volume), { recursive: true, force: true });
          v.store = undefined;
        });
        this.volumes.delete(req.volume);
        this.log('info', 'clear-vol', { volume: req.volume });
        return { volume: req.volume, state: 'Clear', actions: [] };
      }),
      ResetVol: unary(async (req) => {
        const v = this.volume(req.volume);
        await v.state.transact('ResetVol', async () => {
          await fs.promises.rm(path.join(this.config.dataDir, req.volume), { recursive: true, force: true });
          v.store = await ArchiveVolumeStore.init(this.config.dataDir, req.volume);
        });
        return this.volumeState(v);
      }),
      Start: unary(async (req) => {
        const v = this.volume(req.volume);
        await v.state.transact('Start', async () => undefined);
        return this.volumeState(v);
      }),
      Stop: unary(async (req) => {
        const v = this.volume(req.volume);
        v.state.require(ACTIVE, 'stop');
        return this.ops.start('stop', req.volume, async () => {
          v.state.stop = req.mode === 'force' ? 'force-stopping' : 'stopping';
          try {
            await v.state.waitUntilIdle();
            await v.state.transact('Stop', async () => undefined);
          } finally {
            v.state.stop = 'not-stopping';
          }
        });
      }),
      GetState: unary(async (req) => {
        const v = this.volumes.get(req.volume);
        return v ? this.volumeState(v) : { volume: req.volume, state: 'Clear', actions: [] };
      }),
      ListVolumes: unary(async () => ({
        volumes: [...this.volumes.values()].map((v) => this.volumeState(v)),
      })),
      Status: unary(async (req) => {
        const v = this.volume(req.volume);
        const s = this.store(v);
        const base = s.baseState();
        const diffs = s.allDiffs();
        return {
          state: this.volumeState(v),
          storageUuid: s.storageUuid,
          archiveUuid: s.archiveUuid,
          base: base?.snapB,
          latest: base ? s.latestSnap() : undefined,
          size: s.sizeLb,
          diffs: diffs.length,
          diffBytes: diffs.reduce((a, d) => a + d.dataSize, 0),
          restored: s.listRestored(),
        };
      }),
      GetRestorable: unary(async (req) => {
        const v = this.volume(req.volume);
        const list = ACTIVE.includes(v.state.state) ? this.store(v).restorable(req.all) : [];
        return {
          snapshots: list.map((r) => ({ gid: r.gid, timestamp: r.timestamp, explicit: r.isExplicit })),
        };
      }),
      ListRestored: unary(async (req) => ({
        gids: this.store(this.volume(req.volume)).listRestored(),
      })),
      DelRestored: unary(async (req) => {
        const v = this.volume(req.volume);
        if (v.state.runningActions().includes('Restore'))
          throw new WalbError('FAILED_PRECONDITION', `volume ${req.volume} is restoring`);
        await this.store(v).delRestored(req.gid);
        return {};
      }),
      Restore: unary(async (req) => {
        const v = this.volume(req.volume);
        v.state.require(ACTIVE, 'restore');
        if (v.state.stop !== 'not-stopping')
          throw new WalbError('FAILED_PRECONDITION', `volume ${req.volume} is stopping`);
        const store = this.store(v);
        if (!store.restorable(true).some((r) => r.gid === req.gid))
          throw new WalbError('INVALID_ARGUMENT', `gid ${req.gid} of ${req.volume} is not restorable`);
        if (store.listRestored().includes(req.gid))
          throw new WalbError('ALREADY_EXISTS', `gid ${req.gid} of ${req.volume} is restored already`);
        const release = this.foreground.take();
        const end = v.state.beginAction('Restore');
        return this.ops.start('restore', req.volume, async (op) => {
          try {
            const out = await store.restore(req.gid, (done, total) => op.progress(done, total));
            this.log('info', 'restored', { volume: req.volume, gid: req.gid, path: out });
            return out;
          } finally {
            end();
            release();
          }
        });
      }),
      FullSync: (call) => void this.fullSync(call),
      SendWdiff: (call) => void this.receiveWdiff(call),
    };
  }

  /** Full backup from a storage (docs/servers.md §7.3): header, accept, bulks at their offsets, end, ack. */
  private fullSync(call: Stream<FullSyncRequest__Output>): Promise<void> {
    return serveTransfer(call, {
      kind: 'full sync',
      log: this.log,
      slots: this.foreground,
      header: (m) => m.header ?? undefined,
      endOf: (m) => (m.end?.snapshot ? m.end : undefined),
      check: (h) => {
        const v = this.volumes.get(h.volume);
        if (!v?.store) return { reason: 'NOT_FOUND', message: `no volume ${h.volume}` };
        if (v.state.state !== 'SyncReady')
          return { reason: 'BAD_STATE', message: `volume ${h.volume} is ${v.state.state}, needs SyncReady` };
        if (h.size <= 0 || h.size % 512 !== 0)
          throw new WalbError('INVALID_ARGUMENT', `bad volume size ${h.size}`);
        return undefined;
      },
      receive: async (h, transfer) => {
        const v = this.volumes.get(h.volume)!;
        const store = v.store!;
        const sizeBytes = h.size * 512;
        let snapshot: MetaSnap | undefined;
        let bytes = 0;
        let path: 'bulk' | 'stream' = 'stream';
        await v.state.transact('FullSync', async () => {
          const image = await store.beginFullSync(h.size);
          const syncEvery = Math.max(1, this.config.fsyncIntervalMb) * 1048576;
          // With a bulk receiver the bytes go there and this stream only carries the end; without, they come here.
          const token = this.bulk ? crypto.randomBytes(16).toString('hex') : '';
          this.bulk?.expect(token, { path: image, size: sizeBytes, syncEveryBytes: syncEvery });
          transfer.accept(token ? { bulkPort: this.bulk!.port(), bulkToken: token } : {});
          const fh = await fs.promises.open(image, 'r+');
          let unsynced = 0;
          try {
            for await (const m of transfer.data()) {
              if (v.state.stop === 'force-stopping') throw new WalbError('FAILED_PRECONDITION', 'stopped');
              if (!m.data) throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a full sync');
              // Bulks on the stream: the sender could not reach the receiver; it must not write any more.
              if (token && bytes === 0) this.bulk?.forget(token);
              const { offset, data } = m.data;
              if (offset % 512 !== 0 || offset + data.length > sizeBytes)
                throw new WalbError(
                  'INVALID_ARGUMENT',
                  `bulk at ${offset} (+${data.length}) is outside the volume`,
                );
              await fh.write(data, 0, data.length, offset);
              bytes += data.length;
              unsynced += data.length;
              if (unsynced >= syncEvery) {
                await fh.datasync();
                unsynced = 0;
              }
            }
            // The end message too: a force stop drops the base.
            if (v.state.stop === 'force-stopping') throw new WalbError('FAILED_PRECONDITION', 'stopped');
            const end = transfer.end();
            snapshot = snap(end.snapshot!.gidB, end.snapshot!.gidE);
            if (token && this.bulkReceived(token, Number(end.bulkBytes))) {
              bytes += Number(end.bulkBytes);
              path = 'bulk';
            }
          } finally {
            await fh.close();
            if (token) this.bulk?.forget(token);
          }
          await store.finishFullSync(snapshot!, Number(h.timestamp), h.storageUuid, h.size);
        });
        this.log('info', 'full-sync-done', { volume: h.volume, bytes, path, base: snapText(snapshot!) });
      },
    });
  }

  /**
   * Whether the bulks of a full sync came through the bulk receiver; if so, it must have written all that the
   * sender says it sent. A sender that did not use it (its bulks came on the stream) says 0, and the receiver
   * did not finish a stream for the token.
   */
  private bulkReceived(token: string, sent: number): boolean {
    const o = this.bulk?.outcome(token);
    if (sent === 0 && o?.state !== 'done') return false;
    if (o?.state !== 'done' || o.bytes !== sent)
      throw new WalbError(
        'TRUNCATED',
        `the bulk receiver wrote ${o?.bytes ?? 0} of ${sent} bytes (${o?.state ?? 'closed'}${o?.error ? `: ${o.error}` : ''})`,
      );
    return true;
  }

  /** wdiff from a proxy (docs/servers.md §7.2): header checked, accept or typed rejection, bytes, durable, ack. */
  private receiveWdiff(call: Stream<WdiffRequest__Output>): Promise<void> {
    return serveTransfer(call, {
      kind: 'wdiff transfer',
      log: this.log,
      slots: this.foreground,
      header: (m) => {
        const h = m.header;
        if (!h?.diff?.snapB || !h.diff.snapE) return undefined;
        const { snapB, snapE } = h.diff;
        const d = diff(snap(snapB.gidB, snapB.gidE), snap(snapE.gidB, snapE.gidE), {
          isMergeable: h.diff.mergeable,
          isCompDiff: h.diff.compDiff,
          timestamp: Number(h.diff.timestamp),
        });
        return { ...h, d };
      },
      endOf: (m) => m.end ?? undefined,
      check: (h) => {
        const v = this.volumes.get(h.volume);
        if (!v?.store) return { reason: 'NOT_FOUND', message: `no volume ${h.volume}` };
        const st = v.state.state;
        if (st === 'Stopped' || st === 'Start' || st === 'Stop' || v.state.stop !== 'not-stopping')
          return { reason: 'STOPPED', message: `volume ${h.volume} is stopped` };
        if (st === 'FullSync')
          return { reason: 'SYNCING', message: `volume ${h.volume} is in a full backup` };
        if (st === 'WdiffRecv')
          return { reason: 'BUSY', message: `volume ${h.volume} receives another wdiff` };
        if (st !== 'Archived') return { reason: 'BAD_STATE', message: `volume ${h.volume} is ${st}` };
        const store = v.store;
        if (h.size > store.sizeLb)
          return {
            reason: 'SMALLER_SIZE',
            message: `volume ${h.volume} holds ${store.sizeLb} LB, the diff is for ${h.size}`,
          };
        const verdict = store.checkDiff(h.d, h.storageUuid);
        if (verdict === 'different-uuid') return { reason: 'DIFFERENT_UUID', message: 'another log stream' };
        if (verdict === 'too-old-diff')
          return { reason: 'TOO_OLD_DIFF', message: `latest is ${snapText(store.latestSnap())}` };
        if (verdict === 'too-new-diff')
          return { reason: 'TOO_NEW_DIFF', message: `latest is ${snapText(store.latestSnap())}` };
        if (verdict === 'archive-not-found') return { reason: 'NOT_FOUND', message: 'no base image' };
        return undefined;
      },
      receive: async (h, transfer) => {
        const v = this.volumes.get(h.volume)!;
        const store = v.store!;
        const tmp = store.tempPath();
        await v.state
          .transact('WdiffRecv', async () => {
            transfer.accept();
            const fh = await fs.promises.open(tmp, 'w');
            try {
              for await (const m of transfer.data()) {
                if (!m.data)
                  throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a wdiff transfer');
                await fh.write(m.data);
              }
              await fh.datasync();
            } finally {
              await fh.close();
            }
            await native.wdiffVerify(tmp);
            await store.addDiff(tmp, h.d);
          })
          .catch(async (err: unknown) => {
            await fs.promises.rm(tmp, { force: true });
            throw err;
          });
        this.log('info', 'wdiff-received', {
          volume: h.volume,
          diff: `${snapText(h.d.snapB)}-->${snapText(h.d.snapE)}`,
        });
      },
    });
  }
}
