// One userspace WalB device as an NBD export: each connection's requests are served in C++ (native/src/core:
// nbd_wire.* over nbd_wdev_backend.*), through the write path that logs them into the ldev before they reach the
// ddev. This class opens the device and forwards its control calls.
import type { NbdExport, NbdTransmission, TransmissionLimits, TransmissionStats } from '../nbd/types';
import {
  native,
  type NativeWdev,
  type NbdLatency,
  type U64,
  type WdevOptions,
  type WdevRedoResult,
  type WdevStatus,
} from '../native';

export interface WdevSpec {
  name: string;
  ldev: string;
  ddev: string;
  options?: WdevOptions;
}

/** What the NBD connections to a device did since it was opened, the ended ones and those running. */
export interface NbdCounters {
  connections: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  rejected: number;
  backendErrors: number;
  inflightRequests: number;
}

export class WdevDevice implements NbdExport {
  readonly name: string;
  readonly spec: WdevSpec;
  private sizeBytes = 0;
  private readonly dev: NativeWdev;
  /** The connections running, whose counters are read live, and the sums of those that ended. */
  private readonly running = new Set<NbdTransmission>();
  private readonly ended = { requests: 0, bytesRead: 0, bytesWritten: 0, rejected: 0, backendErrors: 0 };

  private constructor(spec: WdevSpec) {
    this.spec = spec;
    this.name = spec.name;
    this.dev = new native.Wdev();
  }

  /** Opens the devices, redoes the logs from the last checkpoint and starts the write path. */
  static async open(spec: WdevSpec): Promise<{ device: WdevDevice; redo: WdevRedoResult }> {
    const device = new WdevDevice(spec);
    const redo = await device.dev.open(spec.ldev, spec.ddev, { ...spec.options, name: spec.name });
    await device.status();
    return { device, redo };
  }

  get size(): number {
    return this.sizeBytes;
  }

  get description(): string {
    return `walb device ${this.name} (ldev ${this.spec.ldev}, ddev ${this.spec.ddev})`;
  }

  serve(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): NbdTransmission {
    let closed = false;
    let t: NbdTransmission | undefined = undefined;
    t = this.dev.serve(fd, pending, limits, (stats) => {
      closed = true;
      if (t) this.running.delete(t);
      for (const k of Object.keys(this.ended) as (keyof typeof this.ended)[]) this.ended[k] += stats[k];
      onClose(stats);
    });
    if (!closed) this.running.add(t);
    return t;
  }

  /** The NBD counters now (the native side keeps them per connection). */
  nbdCounters(): NbdCounters {
    const c = { ...this.ended, connections: this.running.size, inflightRequests: 0 };
    for (const t of this.running) {
      const s = t.stats();
      for (const k of Object.keys(this.ended) as (keyof typeof this.ended)[]) c[k] += s[k];
      c.inflightRequests += s.inflightRequests;
    }
    return c;
  }

  /** How long its NBD requests took, per command (timed natively where they are served). */
  nbdLatency(): NbdLatency {
    return this.dev.nbdLatency();
  }

  async status(): Promise<WdevStatus> {
    return this.track(await this.dev.status());
  }

  async setOldestLsid(lsid: U64): Promise<WdevStatus> {
    return this.track(await this.dev.setOldestLsid(lsid));
  }

  async takeCheckpoint(): Promise<WdevStatus> {
    return this.track(await this.dev.takeCheckpoint());
  }

  async setCheckpointInterval(ms: number): Promise<WdevStatus> {
    return this.track(await this.dev.setCheckpointInterval(ms));
  }

  async resetWal(): Promise<WdevStatus> {
    return this.track(await this.dev.resetWal());
  }

  async freeze(timeoutSec: number): Promise<WdevStatus> {
    return this.track(await this.dev.freeze(timeoutSec));
  }

  async melt(): Promise<WdevStatus> {
    return this.track(await this.dev.melt());
  }

  async resize(sizeLb: U64): Promise<WdevStatus> {
    return this.track(await this.dev.resize(sizeLb));
  }

  /** Ends its NBD connections (their requests in flight are answered), drains all writes to the ddev and
   * checkpoints; the device is unusable afterwards. */
  async close(): Promise<WdevStatus> {
    return this.track(await this.dev.close());
  }

  private track(s: WdevStatus): WdevStatus {
    this.sizeBytes = s.deviceSize * 512;
    return s;
  }
}
