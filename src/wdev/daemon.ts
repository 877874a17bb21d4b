// walb-wdevd: hosts wdevs, serves them over NBD (unix socket, optionally loopback TCP) and answers the
// WdevControl gRPC service on a unix socket.
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { WalbError, errorCode, errorMessage } from '../common/errors';
import { loadProto, startGrpcServer, stopGrpcServer, unary, requireField } from '../common/grpc';
import type { ServerHealth } from '../common/health';
import type { Logger } from '../common/log';
import {
  MetricsServer,
  newRegistry,
  sampled,
  sampledHistogram,
  serveMetrics,
  type HistogramSample,
  type Sample,
} from '../common/metrics';
import {
  applySocketAccess,
  socketAccess,
  socketInUse,
  staleSocket,
  type SocketAccess,
} from '../common/socket';
import type { WdevdConfig } from '../config/wdevd';
import type { ProtoGrpcType } from '../generated/wdev';
import type { CreateWdevRequest__Output } from '../generated/walb/v1/CreateWdevRequest';
import type { FormatLdevReply } from '../generated/walb/v1/FormatLdevReply';
import type { FormatLdevRequest__Output } from '../generated/walb/v1/FormatLdevRequest';
import type { WdevControlHandlers } from '../generated/walb/v1/WdevControl';
import type { WdevOptions as WdevOptionsMsg } from '../generated/walb/v1/WdevOptions';
import type { WdevStatus as WdevStatusMsg } from '../generated/walb/v1/WdevStatus';
import { native, type WdevOptions, type WdevStatus } from '../native';
import { MapExportRegistry, NbdServer, type NbdLogRecord } from '../nbd';
import { WdevDevice, type NbdCounters } from './device';
import { WdevRegistry, type WdevEntry } from './registry';

const NAME_RE = /^[A-Za-z0-9_.-]{1,25}$/;
const MiB = 1 << 20;

interface Hosted {
  entry: WdevEntry;
  device?: WdevDevice;
  /** Why the device is not open (it stays registered; fix the cause and restart, or delete it). */
  error?: string;
}

export class WdevDaemon {
  private readonly registry: WdevRegistry;
  private readonly hosted = new Map<string, Hosted>();
  private readonly exports = new MapExportRegistry();
  private readonly nbdServers: NbdServer[] = [];
  private grpcServer: grpc.Server | undefined;
  private health: ServerHealth | undefined;
  private readonly metricsRegistry = newRegistry();
  private metrics: MetricsServer | undefined;
  /** Control operations that change the set of wdevs run one at a time. */
  private serial: Promise<unknown> = Promise.resolve();
  private readonly socketAccess: SocketAccess;

  constructor(
    readonly config: WdevdConfig,
    private readonly log: Logger,
  ) {
    this.registry = new WdevRegistry(config.stateDir);
    this.socketAccess = socketAccess(config.sockets);
    this.sampleMetrics();
  }

  async start(): Promise<void> {
    for (const dir of [this.config.runDir, this.config.stateDir, path.dirname(this.config.control.socket)])
      fs.mkdirSync(dir, { recursive: true });
    if (await socketInUse(this.config.control.socket))
      throw new WalbError(
        'FAILED_PRECONDITION',
        `another walb-wdevd answers on ${this.config.control.socket}`,
      );
    for (const entry of await this.registry.load()) await this.openHosted(entry);

    const nbdLog = (r: NbdLogRecord) => {
      const { level, event, ...rest } = r;
      this.log(level, `nbd-${event}`, rest);
    };
    const limits = { maxInflightBytes: this.config.nbd.maxInflightMb * MiB, logger: nbdLog };
    this.nbdServers.push(
      new NbdServer({ registry: this.exports, listen: { path: this.config.nbd.socket }, ...limits }),
    );
    if (this.config.nbd.tcp) {
      const [host, port] = this.config.nbd.tcp.split(':');
      const allowRemote = this.config.nbd.tcpAllowRemote;
      this.nbdServers.push(
        new NbdServer({
          registry: this.exports,
          listen: { host, port: Number(port), allowRemote },
          ...limits,
        }),
      );
    }
    for (const s of this.nbdServers) await s.listen();

    if (await staleSocket(this.config.control.socket)) fs.unlinkSync(this.config.control.socket);
    const { definition, proto } = loadProto<ProtoGrpcType>('walb/v1/wdev.proto');
    const { server, health } = await startGrpcServer(
      `unix:${this.config.control.socket}`,
      [definition],
      [
        {
          name: 'walb.v1.WdevControl',
          definition: proto.walb.v1.WdevControl.service,
          implementation: this.handlers(),
        },
      ],
    );
    this.grpcServer = server;
    this.health = health;
    // Before anyone is told the daemon is ready: until then the files have the umask's mode.
    for (const socket of [this.config.nbd.socket, this.config.control.socket])
      applySocketAccess(socket, this.socketAccess);
    this.metrics = await serveMetrics(this.config, this.metricsRegistry);
    health.serving();
    this.log('info', 'started', {
      control: this.config.control.socket,
      metrics: this.metrics?.address ?? 'off',
      nbd: this.nbdServers.map((s) => s.address),
      wdevs: [...this.hosted.keys()],
    });
  }

  /** Graceful stop: NBD clients get their pending replies, every wdev drains to its ddev and checkpoints. */
  async stop(): Promise<void> {
    this.health?.stopping();
    await Promise.all(this.nbdServers.map((s) => s.close({ timeoutMs: 10000 })));
    for (const h of this.hosted.values()) {
      if (!h.device) continue;
      try {
        await h.device.close();
      } catch (err) {
        this.log('error', 'close-failed', { wdev: h.entry.name, error: errorMessage(err) });
      }
    }
    if (this.grpcServer) await stopGrpcServer(this.grpcServer);
    await this.metrics?.close();
    this.log('info', 'stopped', {});
  }

  /** The NBD counters and request durations of each open wdev, read at each scrape. */
  private sampleMetrics(): void {
    const perExport = (type: 'gauge' | 'counter', name: string, help: string, key: keyof NbdCounters) =>
      sampled(this.metricsRegistry, type, name, help, ['export'], () =>
        [...this.hosted.values()].flatMap((h): Sample<'export'>[] =>
          h.device ? [[{ export: h.entry.name }, h.device.nbdCounters()[key]]] : [],
        ),
      );
    perExport('gauge', 'walb_nbd_connections', 'NBD connections in transmission now.', 'connections');
    perExport('counter', 'walb_nbd_requests_total', 'NBD requests taken.', 'requests');
    perExport('counter', 'walb_nbd_read_bytes_total', 'Bytes answered to NBD READ requests.', 'bytesRead');
    perExport(
      'counter',
      'walb_nbd_written_bytes_total',
      'Payload bytes of NBD WRITE requests.',
      'bytesWritten',
    );
    perExport(
      'counter',
      'walb_nbd_rejected_requests_total',
      'NBD requests refused before reaching the device (bad range, read-only, ...).',
      'rejected',
    );
    perExport(
      'counter',
      'walb_nbd_backend_errors_total',
      'NBD requests the device failed (EIO, ...).',
      'backendErrors',
    );
    perExport(
      'gauge',
      'walb_nbd_inflight_requests',
      'NBD requests handed to the device and not answered yet.',
      'inflightRequests',
    );
    sampledHistogram(
      this.metricsRegistry,
      'walb_nbd_request_duration_seconds',
      'Time from an NBD request received whole to its completion by the device, by command.',
      () =>
        [...this.hosted.values()].flatMap((h): HistogramSample<'export' | 'command'>[] => {
          if (!h.device) return [];
          const { bounds, commands } = h.device.nbdLatency();
          return commands.map(({ command, counts, sum }) => [
            { export: h.entry.name, command },
            { bounds, counts, sum },
          ]);
        }),
    );
  }

  nbdAddresses() {
    return this.nbdServers.map((s) => s.address);
  }

  private async openHosted(entry: WdevEntry): Promise<Hosted> {
    const h: Hosted = { entry };
    this.hosted.set(entry.name, h);
    try {
      const { device, redo } = await WdevDevice.open(entry);
      h.device = device;
      this.exports.add(device);
      this.log('info', 'wdev-open', { wdev: entry.name, redo });
    } catch (err) {
      h.error = `${errorMessage(err)} [${errorCode(err) ?? 'INTERNAL'}]`;
      this.log('error', 'wdev-open-failed', { wdev: entry.name, error: h.error });
    }
    return h;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => undefined);
    return run;
  }

  private device(name: string): WdevDevice {
    const h = this.hosted.get(requireField(name, 'name'));
    if (!h) throw new WalbError('NOT_FOUND', `no wdev named '${name}'`);
    if (!h.device) throw new WalbError('FAILED_PRECONDITION', `wdev '${name}' is not open: ${h.error}`);
    return h.device;
  }

  private async statusMsg(h: Hosted): Promise<WdevStatusMsg> {
    const base: WdevStatusMsg = {
      name: h.entry.name,
      ldev: h.entry.ldev,
      ddev: h.entry.ddev,
      options: optionsMsg(h.entry.options),
    };
    if (!h.device) return { ...base, failed: true, failure: h.error ?? 'not open' };
    return { ...base, ...statusFields(await h.device.status()) };
  }

  private async withDevice(name: string, fn: (d: WdevDevice) => Promise<WdevStatus>): Promise<WdevStatusMsg> {
    const d = this.device(name);
    const s = await fn(d);
    return { ...(await this.statusMsg(this.hosted.get(name)!)), ...statusFields(s) };
  }

  private handlers(): WdevControlHandlers {
    return {
      FormatLdev: unary(async (req: FormatLdevRequest__Output): Promise<FormatLdevReply> => {
        const ldev = requireField(req.ldev, 'ldev');
        const ddev = requireField(req.ddev, 'ddev');
        if (req.name && !NAME_RE.test(req.name))
          throw new WalbError('INVALID_ARGUMENT', `bad wdev name '${req.name}'`);
        for (const h of this.hosted.values())
          if (path.resolve(h.entry.ldev) === path.resolve(ldev))
            throw new WalbError('FAILED_PRECONDITION', `${ldev} is the log device of wdev '${h.entry.name}'`);
        const ddevSize = deviceBytes(ddev);
        const s = await native.formatLdev(ldev, {
          pbs: req.pbs || 512,
          deviceSize: Math.floor(ddevSize / 512),
          name: req.name,
          discard: !req.noDiscard,
        });
        this.log('info', 'ldev-formatted', { ldev, ddev, ringBufferSize: s.ringBufferSize });
        return {
          super: {
            pbs: s.pbs,
            salt: s.salt,
            uuid: s.uuid,
            name: s.name,
            ringBufferSize: s.ringBufferSize,
            oldestLsid: s.oldestLsid,
            writtenLsid: s.writtenLsid,
            deviceSize: s.deviceSize,
          },
        };
      }),
      CreateWdev: unary((req: CreateWdevRequest__Output) =>
        this.exclusive(async () => {
          const ldev = path.resolve(requireField(req.ldev, 'ldev'));
          const ddev = path.resolve(requireField(req.ddev, 'ddev'));
          const name = req.name || (await native.readSuper(ldev)).name;
          if (!NAME_RE.test(name))
            throw new WalbError('INVALID_ARGUMENT', `bad wdev name '${name}' (1-25 of A-Z a-z 0-9 _ . -)`);
          if (this.hosted.has(name)) throw new WalbError('ALREADY_EXISTS', `wdev '${name}' exists`);
          for (const h of this.hosted.values()) {
            for (const p of [h.entry.ldev, h.entry.ddev])
              if (p === ldev || p === ddev)
                throw new WalbError('FAILED_PRECONDITION', `${p} is already used by wdev '${h.entry.name}'`);
          }
          const entry: WdevEntry = { name, ldev, ddev, options: this.options(req.options) };
          const h = await this.openHosted(entry);
          if (!h.device) {
            this.hosted.delete(name);
            throw new WalbError('FAILED_PRECONDITION', `cannot start wdev '${name}': ${h.error}`);
          }
          await this.registry.add(entry);
          return this.statusMsg(h);
        }),
      ),
      DeleteWdev: unary((req) =>
        this.exclusive(async () => {
          const h = this.hosted.get(requireField(req.name, 'name'));
          if (!h) throw new WalbError('NOT_FOUND', `no wdev named '${req.name}'`);
          this.exports.remove(h.entry.name);
          let status: WdevStatusMsg = await this.statusMsg(h);
          if (h.device) status = { ...status, ...statusFields(await h.device.close()) };
          this.hosted.delete(h.entry.name);
          await this.registry.remove(h.entry.name);
          this.log('info', 'wdev-deleted', { wdev: h.entry.name });
          return status;
        }),
      ),
      ListWdev: unary(async () => ({
        wdevs: await Promise.all([...this.hosted.values()].map((h) => this.statusMsg(h))),
      })),
      GetStatus: unary(async (req) => {
        const h = this.hosted.get(requireField(req.name, 'name'));
        if (!h) throw new WalbError('NOT_FOUND', `no wdev named '${req.name}'`);
        return this.statusMsg(h);
      }),
      SetOldestLsid: unary((req) => this.withDevice(req.name, (d) => d.setOldestLsid(req.lsid))),
      TakeCheckpoint: unary((req) => this.withDevice(req.name, (d) => d.takeCheckpoint())),
      SetCheckpointInterval: unary((req) =>
        this.withDevice(req.name, (d) => d.setCheckpointInterval(req.intervalMs)),
      ),
      ResetWal: unary((req) =>
        this.withDevice(req.name, async (d) => {
          const s = await d.resetWal();
          this.log('warn', 'wal-reset', { wdev: req.name, uuid: s.super.uuid });
          return s;
        }),
      ),
      Freeze: unary((req) => this.withDevice(req.name, (d) => d.freeze(req.timeoutSec))),
      Melt: unary((req) => this.withDevice(req.name, (d) => d.melt())),
      Resize: unary((req) => this.withDevice(req.name, (d) => d.resize(req.size))),
    };
  }

  private options(o: WdevOptionsMsg | null | undefined): WdevOptions {
    const d = this.config.defaults;
    return {
      maxLogpackKb: o?.maxLogpackKb || d.maxLogpackKb,
      maxPendingBytes: (o?.maxPendingMb || d.maxPendingMb) * MiB,
      logFlushIntervalBytes: (o?.logFlushIntervalMb || d.logFlushIntervalMb) * MiB,
      logFlushIntervalMs: o?.logFlushIntervalMs || d.logFlushIntervalMs,
      checkpointIntervalMs: o?.checkpointIntervalMs ?? d.checkpointIntervalMs,
      errorBeforeOverflow: o?.errorBeforeOverflow ?? false,
    };
  }
}

function optionsMsg(o: WdevOptions): WdevOptionsMsg {
  return {
    maxLogpackKb: o.maxLogpackKb,
    maxPendingMb: Math.round((o.maxPendingBytes ?? 0) / MiB),
    logFlushIntervalMb: Math.round((o.logFlushIntervalBytes ?? 0) / MiB),
    logFlushIntervalMs: o.logFlushIntervalMs,
    checkpointIntervalMs: o.checkpointIntervalMs,
    errorBeforeOverflow: o.errorBeforeOverflow,
  };
}

function statusFields(s: WdevStatus): WdevStatusMsg {
  return {
    pbs: s.super.pbs,
    uuid: s.super.uuid,
    deviceSize: s.deviceSize,
    lsids: s.lsids,
    logUsage: s.logUsage,
    logCapacity: s.logCapacity,
    overflow: s.overflow,
    frozen: s.frozen,
    failed: s.failed,
    failure: s.failure,
    checkpointIntervalMs: s.checkpointInterval,
    pendingBytes: s.pendingBytes,
  };
}

/** Size of a regular file or block device in bytes. */
function deviceBytes(p: string): number {
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch (err) {
    throw new WalbError('NOT_FOUND', `cannot open ${p}: ${errorMessage(err)}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isFile()) return st.size;
    // A block device: its size is where a seek to the end lands; read it through /sys.
    const major = (st.rdev >> 8) & 0xfff;
    const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    const sysSize = `/sys/dev/block/${major}:${minor}/size`;
    return Number(fs.readFileSync(sysSize, 'utf8').trim()) * 512;
  } finally {
    fs.closeSync(fd);
  }
}
