// The storage's data of one volume (docs/servers.md §4.1): <dataDir>/<volume>/volume.json with the steady state,
// the wdev, the storage uuid, the done record and the snapshot queue. Every update is a read-modify-write of the
// newest metadata, one at a time per volume (concurrent snapshots and acknowledgements never lose each other's
// changes), written atomically (docs/servers.md §10.1). What the records become is decided in policy.ts.
import fs from 'node:fs';
import path from 'node:path';
import { readJson, writeJsonAtomic } from '../common/atomic-file';
import type { LsidGid } from '../common/meta';
import {
  NO_DONE,
  pendingRecords,
  recordsAfterAck,
  recordsAfterReset,
  snapshotRecord,
  type Records,
} from './policy';

export type StorageSteadyState = 'SyncReady' | 'Stopped' | 'Target' | 'Standby';

interface VolumeFile {
  version: 1;
  state: StorageSteadyState;
  wdev: string;
  uuid: string;
  /** Last position a proxy acknowledged; lsid -1 until the first full backup. */
  done: LsidGid;
  /** Snapshot records not shipped yet, oldest first. */
  queue: readonly LsidGid[];
}

const VOLUME_FILE = 'volume.json';
const unixNow = () => Math.floor(Date.now() / 1000);

export class StorageVolumeStore {
  /** The update in progress; the next one starts after it. */
  private lock: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly volume: string,
    private meta: VolumeFile,
  ) {}

  /** Every volume of the data directory (created if missing); directories without a volume.json are skipped. */
  static async loadAll(dataDir: string): Promise<StorageVolumeStore[]> {
    await fs.promises.mkdir(dataDir, { recursive: true });
    const stores: StorageVolumeStore[] = [];
    for (const name of await fs.promises.readdir(dataDir)) {
      const dir = path.join(dataDir, name);
      const meta = await readJson<VolumeFile>(path.join(dir, VOLUME_FILE));
      if (meta) stores.push(new StorageVolumeStore(dir, name, meta));
    }
    return stores;
  }

  /** A new volume in SyncReady on `wdev`, in memory until create() writes it. */
  static blank(dataDir: string, volume: string, wdev: string): StorageVolumeStore {
    return new StorageVolumeStore(path.join(dataDir, volume), volume, {
      version: 1,
      state: 'SyncReady',
      wdev,
      uuid: '',
      done: NO_DONE,
      queue: [],
    });
  }

  async create(): Promise<void> {
    await fs.promises.mkdir(this.dir, { recursive: true });
    await writeJsonAtomic(this.file, this.meta);
  }

  /** Deletes the volume's directory. */
  async remove(): Promise<void> {
    await fs.promises.rm(this.dir, { recursive: true, force: true });
  }

  get state(): StorageSteadyState {
    return this.meta.state;
  }

  get wdev(): string {
    return this.meta.wdev;
  }

  get uuid(): string {
    return this.meta.uuid;
  }

  get records(): Records {
    return { done: this.meta.done, queue: this.meta.queue };
  }

  setState(state: StorageSteadyState): Promise<void> {
    return this.update((m) => ({ meta: { ...m, state }, result: undefined }));
  }

  /** After reset-wal: the new log stream's uuid, done (0, 0), nothing queued. */
  resetRecords(uuid: string, gid = 0): Promise<void> {
    return this.update((m) => ({
      meta: { ...m, uuid, ...recordsAfterReset(unixNow(), gid) },
      result: undefined,
    }));
  }

  /** Queues a snapshot record at `lsid`, its gid allocated after the newest record. */
  addSnapshot(lsid: number, isMergeable: boolean, maxPb: number): Promise<LsidGid> {
    return this.update((m) => {
      const rec = snapshotRecord(m, lsid, isMergeable, maxPb, unixNow());
      return { meta: { ...m, queue: [...m.queue, rec] }, result: rec };
    });
  }

  /** The records the wlog task works on (pendingRecords), written when they differ from the stored queue. */
  refreshQueue(latest: number, maxPb: number, intervalSec: number): Promise<Records> {
    return this.update((m) => {
      const queue = pendingRecords(m, latest, maxPb, intervalSec, unixNow());
      const changed = queue.length !== m.queue.length || queue.some((r, i) => r !== m.queue[i]);
      return { meta: changed ? { ...m, queue } : m, result: { done: m.done, queue } };
    });
  }

  /** A proxy acknowledged logs up to `done`: the done record moves and the consumed records go. */
  acknowledge(done: LsidGid): Promise<void> {
    return this.update((m) => ({ meta: { ...m, ...recordsAfterAck(m, done) }, result: undefined }));
  }

  private get file(): string {
    return path.join(this.dir, VOLUME_FILE);
  }

  /** Applies `fn` to the newest metadata and writes the result atomically, one update at a time. */
  private update<R>(fn: (m: VolumeFile) => { meta: VolumeFile; result: R }): Promise<R> {
    const run = this.lock.then(async () => {
      const { meta, result } = fn(this.meta);
      if (meta !== this.meta) {
        await writeJsonAtomic(this.file, meta);
        this.meta = meta;
      }
      return result;
    });
    this.lock = run.catch(() => undefined);
    return run;
  }
}
