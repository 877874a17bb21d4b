// The proxy's files of one volume (docs/servers.md §5.1): archives.json (the registered archives and the volume
// size), received/ (a wlog being received and its wdiff, until the wdiff is linked into every queue) and
// sendto/<archive>/ (a hard link of every wdiff still to send to that archive, named by its diff). A wdiff is on
// disk once, and goes when its last link goes. Every change is durable before it is reported done: metadata by an
// atomic rewrite, files by rename and a synced directory (docs/servers.md §10.1), so that a start can recover what
// a kill -9 left (recover(), docs/servers.md §5.4).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, readJson, writeJsonAtomic } from '../common/atomic-file';
import { parseDiffFileName, type MetaDiff } from '../common/meta';
import {
  TEMP_PREFIX,
  isTemporary,
  queuedGidRuns,
  stagedFileFate,
  type ArchiveInfoEntry,
  type GidRun,
} from './policy';

interface VolumeFile {
  version: 1;
  archives: ArchiveInfoEntry[];
  size: number;
}

/** A wdiff waiting in an archive's queue. */
export interface QueuedWdiff {
  diff: MetaDiff;
  file: string;
}

const META = 'archives.json';
const RECEIVED = 'received';
const SENDTO = 'sendto';

export class ProxyVolumeStore {
  private constructor(
    readonly dir: string,
    readonly volume: string,
    private meta: VolumeFile,
  ) {}

  /** A volume with no archive yet, nothing on disk until the first registration. */
  static empty(dataDir: string, volume: string): ProxyVolumeStore {
    return new ProxyVolumeStore(path.join(dataDir, volume), volume, { version: 1, archives: [], size: 0 });
  }

  /** Every volume of the data directory (a directory with an archives.json). */
  static async loadAll(dataDir: string): Promise<ProxyVolumeStore[]> {
    await fs.promises.mkdir(dataDir, { recursive: true });
    const stores: ProxyVolumeStore[] = [];
    for (const volume of await fs.promises.readdir(dataDir)) {
      const dir = path.join(dataDir, volume);
      const meta = await readJson<VolumeFile>(path.join(dir, META));
      if (meta) stores.push(new ProxyVolumeStore(dir, volume, meta));
    }
    return stores;
  }

  get archives(): readonly ArchiveInfoEntry[] {
    return this.meta.archives;
  }

  /** Volume size [LB]: the largest a storage announced. */
  get size(): number {
    return this.meta.size;
  }

  archive(name: string): ArchiveInfoEntry | undefined {
    return this.meta.archives.find((a) => a.name === name);
  }

  /** Registers an archive, or replaces its registration, with its queue. */
  async putArchive(entry: ArchiveInfoEntry): Promise<void> {
    await fs.promises.mkdir(this.queueDir(entry.name), { recursive: true });
    await fs.promises.mkdir(path.join(this.dir, RECEIVED), { recursive: true });
    await this.save({
      ...this.meta,
      archives: [...this.meta.archives.filter((a) => a.name !== entry.name), entry],
    });
  }

  /** Removes an archive's registration and its queue. */
  async removeArchive(name: string): Promise<void> {
    await fs.promises.rm(this.queueDir(name), { recursive: true, force: true });
    await this.save({ ...this.meta, archives: this.meta.archives.filter((a) => a.name !== name) });
  }

  /** Deletes every file of the volume. */
  async destroy(): Promise<void> {
    await fs.promises.rm(this.dir, { recursive: true, force: true });
  }

  /** Raises the stored volume size to `size` [LB] when it is larger. */
  async raiseSize(size: number): Promise<void> {
    if (size > this.meta.size) await this.save({ ...this.meta, size });
  }

  /**
   * After a crash: wdiffs staged under their final name are linked into every queue, temporary files in
   * received/ and in the queues are deleted (docs/servers.md §5.4).
   */
  async recover(): Promise<void> {
    const received = path.join(this.dir, RECEIVED);
    await fs.promises.mkdir(received, { recursive: true });
    for (const a of this.meta.archives) await fs.promises.mkdir(this.queueDir(a.name), { recursive: true });
    for (const name of await fs.promises.readdir(received)) {
      const fate = stagedFileFate(name);
      if (fate === 'delete') await fs.promises.rm(path.join(received, name), { force: true });
      else if (fate === 'link') await this.distribute(name);
    }
    for (const a of this.meta.archives) {
      const dir = this.queueDir(a.name);
      for (const name of await fs.promises.readdir(dir))
        if (isTemporary(name)) await fs.promises.rm(path.join(dir, name), { force: true });
    }
  }

  // ---- receiving ----

  /** A temporary file in received/ for a wlog being received or its wdiff (`ext`: wlog, wdiff). */
  stagingPath(ext: string): string {
    return path.join(this.dir, RECEIVED, `${TEMP_PREFIX}${crypto.randomBytes(6).toString('hex')}.${ext}`);
  }

  /** Keeps a written wdiff under its name `name` and links it into every archive's queue. */
  async keepWdiff(tmpFile: string, name: string): Promise<void> {
    const received = path.join(this.dir, RECEIVED);
    await fs.promises.rename(tmpFile, path.join(received, name));
    await fsyncDir(received);
    await this.distribute(name);
  }

  /** Deletes a temporary file handed out by stagingPath or mergePath, if it is there. */
  async discard(tmpFile: string): Promise<void> {
    await fs.promises.rm(tmpFile, { force: true });
  }

  // ---- sending ----

  /** The wdiffs in an archive's queue, with their sizes. */
  queued(archive: string): QueuedWdiff[] {
    const dir = this.queueDir(archive);
    const out: QueuedWdiff[] = [];
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      const d = parseDiffFileName(name, fs.statSync(file).size);
      if (d) out.push({ diff: d, file });
    }
    return out;
  }

  /** A temporary file in an archive's queue for the merge of several of its wdiffs. */
  mergePath(archive: string): string {
    return path.join(
      this.queueDir(archive),
      `${TEMP_PREFIX}merge-${crypto.randomBytes(6).toString('hex')}.wdiff`,
    );
  }

  /** Deletes the links of wdiffs that left an archive's queue (sent, or of no use to that archive). */
  async dropQueued(archive: string, files: readonly string[]): Promise<void> {
    for (const f of files) await fs.promises.rm(f, { force: true });
    await fsyncDir(this.queueDir(archive));
  }

  /** wdiffs still staged or queued for any archive. */
  async pendingCount(): Promise<number> {
    let n = await this.countFiles(path.join(this.dir, RECEIVED));
    for (const a of this.meta.archives) n += await this.countFiles(this.queueDir(a.name));
    return n;
  }

  /** An archive's queue: its wdiffs, their bytes and the gids they lead through. */
  async queueStatus(
    archive: string,
  ): Promise<{ pendingWdiffs: number; pendingBytes: number; queuedGids: GidRun[] }> {
    const dir = this.queueDir(archive);
    const files = (await fs.promises.readdir(dir)).filter((f) => !isTemporary(f));
    let bytes = 0;
    for (const f of files)
      bytes += (await fs.promises.stat(path.join(dir, f)).catch(() => ({ size: 0 }))).size;
    const diffs = files.map((f) => parseDiffFileName(f)).filter((d) => d !== undefined);
    return { pendingWdiffs: files.length, pendingBytes: bytes, queuedGids: queuedGidRuns(diffs) };
  }

  // ---- internals ----

  private queueDir(archive: string): string {
    return path.join(this.dir, SENDTO, archive);
  }

  /** Hard-links a durable wdiff of received/ into every archive's queue, then drops it from received/. */
  private async distribute(name: string): Promise<void> {
    const file = path.join(this.dir, RECEIVED, name);
    for (const a of this.meta.archives) {
      const dir = this.queueDir(a.name);
      await fs.promises.mkdir(dir, { recursive: true });
      const target = path.join(dir, name);
      if (!fs.existsSync(target)) await fs.promises.link(file, target);
      await fsyncDir(dir);
    }
    await fs.promises.rm(file);
    await fsyncDir(path.dirname(file));
  }

  private async countFiles(dir: string): Promise<number> {
    return (await fs.promises.readdir(dir)).filter((f) => !isTemporary(f)).length;
  }

  private async save(meta: VolumeFile): Promise<void> {
    await writeJsonAtomic(path.join(this.dir, META), meta);
    this.meta = meta;
  }
}
