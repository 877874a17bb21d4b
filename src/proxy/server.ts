// walb-proxy: receives wlogs from storages, turns each into an indexed wdiff kept durably, and forwards the
// wdiffs to every archive registered for the volume, merging consecutive mergeable ones (docs/servers.md §5, §7.1,
// §7.2). Layout per volume: archives.json (registrations, volume size), received/ (staging), sendto/<archive>/
// (hard links of every wdiff still to send there).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { fsyncDir, readJson, writeJsonAtomic } from '../common/atomic-file';
import { Backoff } from '../common/backoff';
import { WalbError, errorMessage } from '../common/errors';
import { ForegroundSlots } from '../common/foreground';
import { channelCredentials, connect, loadProto, stopGrpcServer, unary, type Promised } from '../common/grpc';
import type { Logger } from '../common/log';
import {
  DiffSet,
  diff,
  diffFileName,
  isCleanDiff,
  mergeDiff,
  parseDiffFileName,
  snap,
  snapText,
  type MetaDiff,
} from '../common/meta';
import { OperationRegistry } from '../common/operations';
import { startRoleServer } from '../common/role-server';
import { VolumeState, type Edge } from '../common/state-machine';
import { TaskQueue, type TaskResult } from '../common/task-queue';
import { fileChunks, runTransfer, serveTransfer } from '../common/transfer';
import { buildWlogHeader } from '../common/wlog-header';
import { checkVolumeName } from '../common/volume-name';
import type { ProxyConfig } from '../config/proxy';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { ProxyHandlers } from '../generated/walb/v1/Proxy';
import type { TransferReply } from '../generated/walb/v1/TransferReply';
import type { WlogRequest__Output } from '../generated/walb/v1/WlogRequest';
import { native, readWdiffHeader, type Compression } from '../native';

type State =
  | 'Clear'
  | 'Stopped'
  | 'Started'
  | 'Start'
  | 'Stop'
  | 'ClearVol'
  | 'ArchiveInfo'
  | 'WlogRecv'
  | 'WaitForEmpty';

const EDGES: Edge<State>[] = [
  { from: 'Clear', via: 'ArchiveInfo', to: 'Stopped' },
  { from: 'Stopped', via: 'ArchiveInfo', to: 'Stopped' },
  { from: 'Stopped', via: 'ClearVol', to: 'Clear' },
  { from: 'Stopped', via: 'Start', to: 'Started' },
  { from: 'Started', via: 'Stop', to: 'Stopped' },
  { from: 'Started', via: 'WaitForEmpty', to: 'Stopped' },
  { from: 'Started', via: 'WlogRecv', to: 'Started' },
];
const SENDING: State[] = ['Started', 'WlogRecv', 'WaitForEmpty'];

export interface ArchiveInfoEntry {
  name: string;
  address: string;
  compression: string;
  delaySec: number;
}

interface VolumeFile {
  version: 1;
  archives: ArchiveInfoEntry[];
  size: number;
}

interface Volume {
  name: string;
  dir: string;
  state: VolumeState<State>;
  meta: VolumeFile;
  sendError: Set<string>;
  lastWlogMs: number;
}

const TMP = '.tmp-';

function compressionOf(text: string): { compression: Compression; level: number } {
  const [name, level] = (text || 'snappy').split(':');
  const ok = ['snappy', 'none', 'zstd', 'lz4', 'gzip', 'lzma'];
  if (!ok.includes(name))
    throw new WalbError('INVALID_ARGUMENT', `unknown compression '${name}' (${ok.join(', ')})`);
  return { compression: name as Compression, level: Number(level ?? 0) || 0 };
}

export class ProxyServer {
  private readonly volumes = new Map<string, Volume>();
  private readonly ops = new OperationRegistry();
  private readonly queue: TaskQueue<string>;
  private readonly backoff: Backoff<string>;
  private readonly clients = new Map<string, Promised<ArchiveClient>>();
  private server: grpc.Server | undefined;
  private readonly foreground: ForegroundSlots;
  private readonly Archive = loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive;
  port = 0;

  constructor(
    readonly config: ProxyConfig,
    private readonly log: Logger,
  ) {
    this.foreground = new ForegroundSlots(config.maxForegroundTasks);
    this.backoff = new Backoff(config.retryDelaySec * 1000, config.maxRetryDelaySec * 1000);
    this.queue = new TaskQueue<string>(
      Math.max(1, config.backgroundTasks),
      (key) => this.sendTask(key),
      (key, err) => {
        this.log('warn', 'send-failed', { task: key, error: errorMessage(err) });
        return 1000;
      },
    );
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.config.dataDir, { recursive: true });
    for (const name of fs.readdirSync(this.config.dataDir)) {
      const dir = path.join(this.config.dataDir, name);
      const meta = await readJson<VolumeFile>(path.join(dir, 'archives.json'));
      if (!meta) continue;
      const v = this.newVolume(name, 'Stopped', meta);
      this.volumes.set(name, v);
      if (this.config.startVolumes) {
        await v.state.transact('Start', () => this.recover(v));
        this.queueSends(v);
      } else {
        await this.recover(v); // staged files are linked; the volume waits for `start`
      }
    }
    const { server, port } = await startRoleServer(
      this.config.listen,
      'Proxy',
      this.handlers(),
      this.ops,
      this.config.tls,
    );
    this.server = server;
    this.port = port;
    this.log('info', 'started', { listen: this.config.listen, port, volumes: [...this.volumes.keys()] });
  }

  async stop(): Promise<void> {
    await this.queue.stop();
    if (this.server) await stopGrpcServer(this.server, 5000);
    for (const c of this.clients.values()) c.close();
    this.log('info', 'stopped', {});
  }

  private newVolume(name: string, initial: State, meta: VolumeFile): Volume {
    return {
      name,
      dir: path.join(this.config.dataDir, name),
      state: new VolumeState<State>(name, EDGES, initial),
      meta,
      sendError: new Set(),
      lastWlogMs: Date.now(),
    };
  }

  private volume(name: string): Volume {
    checkVolumeName(name);
    const v = this.volumes.get(name);
    if (!v) throw new WalbError('NOT_FOUND', `no volume ${name} on this proxy`);
    return v;
  }

  private async saveMeta(v: Volume): Promise<void> {
    await writeJsonAtomic(path.join(v.dir, 'archives.json'), v.meta);
  }

  private task(v: Volume, archive: string): string {
    return `${v.name}/${archive}`;
  }

  /** Start of a volume: wdiffs a crash left in received/ are linked to every archive, temp files go. Send tasks
   * are queued by the caller once the volume is Started. */
  private async recover(v: Volume): Promise<void> {
    const received = path.join(v.dir, 'received');
    await fs.promises.mkdir(received, { recursive: true });
    for (const a of v.meta.archives)
      await fs.promises.mkdir(path.join(v.dir, 'sendto', a.name), { recursive: true });
    for (const name of await fs.promises.readdir(received)) {
      const p = path.join(received, name);
      if (name.startsWith(TMP)) await fs.promises.rm(p, { force: true });
      else if (parseDiffFileName(name)) await this.distribute(v, p, name);
    }
    for (const a of v.meta.archives) {
      const dir = path.join(v.dir, 'sendto', a.name);
      for (const name of await fs.promises.readdir(dir))
        if (name.startsWith(TMP)) await fs.promises.rm(path.join(dir, name), { force: true });
      v.sendError.delete(a.name);
    }
  }

  /** One send task per archive, now (after a start: the volume must be Started when they run). */
  private queueSends(v: Volume): void {
    for (const a of v.meta.archives) this.queue.pushForce(this.task(v, a.name), 0);
  }

  /** Hard-links a durable wdiff in received/ into every archive's queue, then drops it from received/. */
  private async distribute(v: Volume, file: string, name: string): Promise<void> {
    for (const a of v.meta.archives) {
      const dir = path.join(v.dir, 'sendto', a.name);
      await fs.promises.mkdir(dir, { recursive: true });
      const target = path.join(dir, name);
      if (!fs.existsSync(target)) await fs.promises.link(file, target);
      await fsyncDir(dir);
    }
    await fs.promises.rm(file);
    await fsyncDir(path.dirname(file));
  }

  private handlers(): ProxyHandlers {
    const addOrUpdate = (update: boolean): ProxyHandlers['ArchiveInfoAdd'] =>
      unary(async (req) => {
        checkVolumeName(req.volume);
        if (!/^[0-9A-Za-z_.-]{1,64}$/.test(req.name))
          throw new WalbError('INVALID_ARGUMENT', `bad archive name '${req.name}'`);
        if (!/^[^\s:]+:\d{1,5}$/.test(req.address))
          throw new WalbError('INVALID_ARGUMENT', `bad address '${req.address}'`);
        compressionOf(req.compression);
        let v = this.volumes.get(req.volume);
        if (!v) {
          v = this.newVolume(req.volume, 'Clear', { version: 1, archives: [], size: 0 });
          this.volumes.set(req.volume, v);
        }
        const vol = v;
        const exists = vol.meta.archives.some((a) => a.name === req.name);
        if (exists && !update)
          throw new WalbError('ALREADY_EXISTS', `archive ${req.name} is registered for ${req.volume}`);
        if (!exists && update)
          throw new WalbError('NOT_FOUND', `archive ${req.name} is not registered for ${req.volume}`);
        try {
          await vol.state.transact('ArchiveInfo', async () => {
            await fs.promises.mkdir(path.join(vol.dir, 'sendto', req.name), { recursive: true });
            await fs.promises.mkdir(path.join(vol.dir, 'received'), { recursive: true });
            const entry = {
              name: req.name,
              address: req.address,
              compression: req.compression || 'snappy',
              delaySec: req.delaySec,
            };
            vol.meta = {
              ...vol.meta,
              archives: [...vol.meta.archives.filter((a) => a.name !== req.name), entry],
            };
            await this.saveMeta(vol);
          });
        } finally {
          if (vol.state.state === 'Clear') this.volumes.delete(req.volume);
        }
        return {};
      });
    return {
      ArchiveInfoAdd: addOrUpdate(false),
      ArchiveInfoUpdate: addOrUpdate(true),
      ArchiveInfoDelete: unary(async (req) => {
        const v = this.volume(req.volume);
        v.state.require(['Stopped'], 'archive-info delete');
        if (!v.meta.archives.some((a) => a.name === req.name))
          throw new WalbError('NOT_FOUND', `archive ${req.name} is not registered for ${req.volume}`);
        const left = v.meta.archives.filter((a) => a.name !== req.name);
        if (left.length === 0) {
          await v.state.transact('ClearVol', () => fs.promises.rm(v.dir, { recursive: true, force: true }));
          this.volumes.delete(req.volume);
        } else {
          await v.state.transact('ArchiveInfo', async () => {
            await fs.promises.rm(path.join(v.dir, 'sendto', req.name), { recursive: true, force: true });
            v.meta = { ...v.meta, archives: left };
            await this.saveMeta(v);
          });
        }
        return {};
      }),
      ArchiveInfoList: unary(async (req) => ({
        archives: this.volume(req.volume).meta.archives.map((a) => ({ volume: req.volume, ...a })),
      })),
      Start: unary(async (req) => {
        const v = this.volume(req.volume);
        await v.state.transact('Start', () => this.recover(v));
        this.queueSends(v);
        return this.volumeState(v);
      }),
      Stop: unary(async (req) => {
        const v = this.volume(req.volume);
        // A wlog being received or a send in progress is waited for (up to 60 s), as WalB's stop does.
        v.state.require(SENDING, 'stop');
        return this.ops.start('stop', req.volume, async () => {
          if (req.mode === 'empty') {
            v.state.stop = 'waiting-for-empty';
            try {
              await v.state.waitUntilIdle();
              await v.state.transact('WaitForEmpty', async () => {
                const deadline = Date.now() + 60_000;
                while (this.pending(v) > 0) {
                  if (Date.now() > deadline)
                    throw new WalbError('FAILED_PRECONDITION', 'wdiffs still to send after 60 s');
                  for (const a of v.meta.archives) this.queue.push(this.task(v, a.name));
                  await new Promise((r) => setTimeout(r, 200));
                }
              });
            } finally {
              v.state.stop = 'not-stopping';
            }
          } else {
            v.state.stop = req.mode === 'force' ? 'force-stopping' : 'stopping';
            try {
              await v.state.waitUntilIdle();
              for (const a of v.meta.archives) this.queue.remove(this.task(v, a.name));
              await v.state.transact('Stop', async () => undefined);
            } finally {
              v.state.stop = 'not-stopping';
            }
          }
        });
      }),
      ClearVol: unary(async (req) => {
        const v = this.volume(req.volume);
        if (v.state.runningActions().length)
          throw new WalbError('FAILED_PRECONDITION', `volume ${req.volume} is sending`);
        await v.state.transact('ClearVol', () => fs.promises.rm(v.dir, { recursive: true, force: true }));
        this.volumes.delete(req.volume);
        return { volume: req.volume, state: 'Clear', actions: [] };
      }),
      Kick: unary(async (req) => {
        const vols = req.volume ? [this.volume(req.volume)] : [...this.volumes.values()];
        for (const v of vols) {
          if (!SENDING.includes(v.state.state)) continue;
          for (const a of v.meta.archives) {
            if (req.archive && a.name !== req.archive) continue;
            v.sendError.delete(a.name);
            this.backoff.reset(this.task(v, a.name));
            this.queue.pushForce(this.task(v, a.name), 0);
          }
        }
        return {};
      }),
      GetState: unary(async (req) => {
        const v = this.volumes.get(req.volume);
        return v ? this.volumeState(v) : { volume: req.volume, state: 'Clear', actions: [] };
      }),
      IsWdiffSendError: unary(async (req) => {
        const v = this.volume(req.volume);
        if (!v.meta.archives.some((a) => a.name === req.name))
          throw new WalbError('NOT_FOUND', `archive ${req.name} is not registered for ${req.volume}`);
        return { value: v.sendError.has(req.name) };
      }),
      ListVolumes: unary(async () => ({
        volumes: [...this.volumes.values()].map((v) => this.volumeState(v)),
      })),
      Status: unary(async (req) => {
        const v = this.volume(req.volume);
        const archives = [];
        for (const a of v.meta.archives) {
          const dir = path.join(v.dir, 'sendto', a.name);
          const files = (await fs.promises.readdir(dir)).filter((f) => !f.startsWith(TMP));
          let bytes = 0;
          for (const f of files)
            bytes += (await fs.promises.stat(path.join(dir, f)).catch(() => ({ size: 0 }))).size;
          archives.push({
            name: a.name,
            address: a.address,
            pendingWdiffs: files.length,
            pendingBytes: bytes,
            sendError: v.sendError.has(a.name),
          });
        }
        return {
          state: this.volumeState(v),
          size: v.meta.size,
          lastWlogReceived: Math.floor(v.lastWlogMs / 1000),
          archives,
        };
      }),
      SendWlog: (call) => void this.receiveWlog(call),
    };
  }

  private volumeState(v: Volume) {
    return { volume: v.name, state: v.state.state, actions: v.state.runningActions() };
  }

  /** wdiffs still queued for any archive of the volume. */
  private pending(v: Volume): number {
    let n = fs.readdirSync(path.join(v.dir, 'received')).filter((f) => !f.startsWith(TMP)).length;
    for (const a of v.meta.archives)
      n += fs.readdirSync(path.join(v.dir, 'sendto', a.name)).filter((f) => !f.startsWith(TMP)).length;
    return n + v.state.runningActions().length;
  }

  // ---- receiving wlogs (docs/servers.md §7.1 steps 5-6) ----

  private receiveWlog(call: grpc.ServerDuplexStream<WlogRequest__Output, TransferReply>): Promise<void> {
    return serveTransfer(call, {
      kind: 'wlog transfer',
      log: this.log,
      slots: this.foreground,
      header: (m) => m.header ?? undefined,
      endOf: (m) => m.end ?? undefined,
      check: (h) => {
        const v = this.volumes.get(h.volume);
        if (!v) return { reason: 'NOT_FOUND', message: `no volume ${h.volume} on this proxy` };
        if (v.state.state !== 'Started' || v.state.stop !== 'not-stopping')
          return { reason: 'STOPPED', message: `volume ${h.volume} is ${v.state.state}` };
        return undefined;
      },
      receive: async (h, transfer) => {
        const v = this.volumes.get(h.volume)!;
        const received = path.join(v.dir, 'received');
        const tmpWlog = path.join(received, `${TMP}${crypto.randomBytes(6).toString('hex')}.wlog`);
        let name = '';
        try {
          await v.state.transact('WlogRecv', async () => {
            transfer.accept();
            const fh = await fs.promises.open(tmpWlog, 'w');
            try {
              await fh.write(
                buildWlogHeader({ pbs: h.pbs, salt: h.salt, uuid: h.storageUuid, beginLsid: h.beginLsid }),
              );
              for await (const m of transfer.data()) {
                if (!m.packs)
                  throw new WalbError('INVALID_ARGUMENT', 'unexpected message in a wlog transfer');
                await fh.write(m.packs);
              }
            } finally {
              await fh.close();
            }
            const md = transfer.end().diff;
            if (!md?.snapB || !md.snapE)
              throw new WalbError('INVALID_ARGUMENT', 'the wlog end carries no diff');
            const d = diff(snap(md.snapB.gidB, md.snapB.gidE), snap(md.snapE.gidB, md.snapE.gidE), {
              isMergeable: md.mergeable,
              timestamp: Number(md.timestamp),
            });
            if (!isCleanDiff(d)) throw new WalbError('INVALID_ARGUMENT', 'a diff from wlogs is clean');
            const tmpWdiff = path.join(received, `${TMP}${crypto.randomBytes(6).toString('hex')}.wdiff`);
            await native.wlogToWdiff([tmpWlog], tmpWdiff, { indexed: true });
            name = diffFileName({ ...d, dataSize: 0 });
            const final = path.join(received, name);
            await fs.promises.rename(tmpWdiff, final);
            await fsyncDir(received);
            await this.distribute(v, final, name);
            if (h.size > v.meta.size) {
              v.meta = { ...v.meta, size: Number(h.size) };
              await this.saveMeta(v);
            }
          });
        } finally {
          await fs.promises.rm(tmpWlog, { force: true });
        }
        v.lastWlogMs = Date.now();
        for (const a of v.meta.archives) {
          v.sendError.delete(a.name);
          this.queue.push(this.task(v, a.name), a.delaySec * 1000);
        }
        this.log('info', 'wlog-received', { volume: h.volume, wdiff: name });
      },
    });
  }

  // ---- sending wdiffs (docs/servers.md §7.2) ----

  private archiveClient(address: string): Promised<ArchiveClient> {
    let c = this.clients.get(address);
    if (!c) {
      c = connect(this.Archive, address, channelCredentials(this.config.tls));
      this.clients.set(address, c);
    }
    return c;
  }

  private retry(key: string): TaskResult {
    return { again: true, delayMs: this.backoff.next(key) };
  }

  private async sendTask(key: string): Promise<TaskResult> {
    const [volName, archiveName] = key.split('/');
    const v = this.volumes.get(volName);
    const info = v?.meta.archives.find((a) => a.name === archiveName);
    if (!v || !info || !SENDING.includes(v.state.state) || v.sendError.has(archiveName))
      return { again: false };
    const dir = path.join(v.dir, 'sendto', archiveName);
    const files = new Map<MetaDiff, string>();
    for (const name of fs.readdirSync(dir)) {
      const d = parseDiffFileName(name, fs.statSync(path.join(dir, name)).size);
      if (d) files.set(d, path.join(dir, name));
    }
    if (files.size === 0) {
      this.backoff.reset(key);
      return { again: false };
    }
    // The mergeable run from the lowest gid, within the size and count limits and one log stream.
    const set = new DiffSet(files.keys());
    const all = set.all();
    const { diffs: run } = set.mergeableRun(all[0], this.config.maxWdiffSendFiles);
    const uuid = readWdiffHeader(files.get(run[0])!).uuid;
    const send: MetaDiff[] = [run[0]];
    let bytes = run[0].dataSize;
    for (const d of run.slice(1)) {
      if (bytes + d.dataSize > this.config.maxWdiffSendMb * 2 ** 20) break;
      if (readWdiffHeader(files.get(d)!).uuid !== uuid) break;
      send.push(d);
      bytes += d.dataSize;
    }
    const merged = send.slice(1).reduce((a, d) => mergeDiff(a, d), send[0]);
    const end = v.state.beginAction(archiveName);
    let mergedFile = '';
    try {
      let file = files.get(send[0])!;
      if (send.length > 1) {
        mergedFile = path.join(dir, `${TMP}merge-${crypto.randomBytes(6).toString('hex')}.wdiff`);
        await native.wdiffMerge(
          send.map((d) => files.get(d)!),
          mergedFile,
          compressionOf(info.compression),
        );
        file = mergedFile;
      }
      const result = await runTransfer(
        this.archiveClient(info.address).SendWdiff(),
        { header: { volume: v.name, storageUuid: uuid, size: v.meta.size, diff: this.diffMsg(merged) } },
        () => fileChunks(file, (data) => ({ data })),
        { end: {} },
        { idleTimeoutMs: this.config.socketTimeoutSec * 1000 },
      );
      const dropSent = async () => {
        for (const d of send) await fs.promises.rm(files.get(d)!, { force: true });
        await fsyncDir(dir);
      };
      if (result.ok) {
        await dropSent();
        this.backoff.reset(key);
        this.log('info', 'wdiff-sent', {
          volume: v.name,
          archive: archiveName,
          diff: `${snapText(merged.snapB)}-->${snapText(merged.snapE)}`,
          files: send.length,
        });
        return { again: true, delayMs: 0 };
      }
      this.log('info', 'wdiff-rejected', {
        volume: v.name,
        archive: archiveName,
        reason: result.reason,
        message: result.message,
      });
      switch (result.reason) {
        case 'TOO_OLD_DIFF':
        case 'DIFFERENT_UUID':
          await dropSent(); // useless to this archive
          return { again: true, delayMs: 0 };
        case 'SMALLER_SIZE':
        case 'NOT_FOUND':
          v.sendError.add(archiveName);
          return { again: false };
        case 'TOO_NEW_DIFF':
        case 'SYNCING':
          return this.retry(key);
        default:
          if (Date.now() - v.lastWlogMs > this.config.retryTimeoutSec * 1000) {
            v.sendError.add(archiveName);
            return { again: false };
          }
          return this.retry(key);
      }
    } finally {
      end();
      if (mergedFile) await fs.promises.rm(mergedFile, { force: true });
    }
  }

  private diffMsg(d: MetaDiff) {
    return {
      snapB: d.snapB,
      snapE: d.snapE,
      mergeable: d.isMergeable,
      compDiff: d.isCompDiff,
      timestamp: d.timestamp,
      dataSize: d.dataSize,
    };
  }
}
