// One userspace WalB device as an NBD export: requests go to the C++ write path (native/src/core/wdev.*),
// which logs them into the ldev before they reach the ddev. This class only maps promises to request ids.
import { NbdError, NBD_EIO, NBD_ENOSPC, NBD_ESHUTDOWN, type NbdErrno } from '../nbd/errors';
import type { NbdExport, TransmissionLimits, TransmissionStats } from '../nbd/types';
import {
  native,
  type NativeWdev,
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

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

const KNOWN_ERRNOS = new Set<number>([NBD_EIO, NBD_ENOSPC, NBD_ESHUTDOWN]);

export class WdevDevice implements NbdExport {
  readonly name: string;
  readonly spec: WdevSpec;
  private sizeBytes = 0;
  private readonly dev: NativeWdev;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();

  private constructor(spec: WdevSpec) {
    this.spec = spec;
    this.name = spec.name;
    this.dev = new native.Wdev((ids, errors) => this.onCompletions(ids, errors));
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

  /** NBD requests of a connection are parsed and answered in C++ (native/src/core/nbd_wire.*). */
  adoptTransmission(
    fd: number,
    pending: Buffer,
    limits: TransmissionLimits,
    onClose: (stats: TransmissionStats) => void,
  ): void {
    this.dev.serve(fd, pending, limits, onClose);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.dev.read(offset, length);
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.submit((id) => this.dev.write(id, offset, data, fua));
  }

  flush(): Promise<void> {
    return this.submit((id) => this.dev.flush(id));
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.submit((id) => this.dev.discard(id, offset, length, fua));
  }

  writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.submit((id) => this.dev.discard(id, offset, length, fua));
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

  /** Drains all writes to the ddev and checkpoints; the device is unusable afterwards. */
  async close(): Promise<WdevStatus> {
    return this.track(await this.dev.close());
  }

  private track(s: WdevStatus): WdevStatus {
    this.sizeBytes = s.deviceSize * 512;
    return s;
  }

  private submit(start: (id: number) => void): Promise<void> {
    const id = this.nextId;
    this.nextId = this.nextId >= Number.MAX_SAFE_INTEGER ? 1 : this.nextId + 1;
    return new Promise<void>((resolve, reject) => {
      if (this.waiting.size === 0) this.dev.ref();
      this.waiting.set(id, { resolve, reject });
      try {
        start(id);
      } catch (err) {
        this.waiting.delete(id);
        if (this.waiting.size === 0) this.dev.unref();
        reject(err as Error);
      }
    });
  }

  private onCompletions(ids: Float64Array, errors: Int32Array): void {
    for (let i = 0; i < ids.length; i++) {
      const w = this.waiting.get(ids[i]);
      if (!w) continue;
      this.waiting.delete(ids[i]);
      const e = errors[i];
      if (e === 0) w.resolve();
      else {
        const errno = (KNOWN_ERRNOS.has(e) ? e : NBD_EIO) as NbdErrno;
        w.reject(new NbdError(errno, `wdev ${this.name}: request failed (${errno})`));
      }
    }
    if (this.waiting.size === 0) this.dev.unref();
  }
}
