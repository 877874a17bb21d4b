// The archive's data of one volume with the file backend (docs/servers.md §6): a sparse base
// image, the wdiff chain beside it (file names carry the metadata), restored snapshots as image files, and a small
// JSON file for the rest. Every change is atomic on disk (temp file, fsync, rename, fsync the directory), so a
// kill -9 at any point leaves either the old or the new state; open() cleans up what a crash left behind.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, readJson, writeJsonAtomic } from '../common/atomic-file';
import { WalbError } from '../common/errors';
import { checkVolumeName } from '../common/volume-name';
import {
  DiffSet,
  applySnap,
  diffFileName,
  diffText,
  isCleanSnap,
  parseDiffFileName,
  relation,
  snapText,
  type MetaDiff,
  type MetaSnap,
  type MetaState,
  type RestorableSnap,
} from '../common/meta';
import { native, type ProgressFn } from '../native';

export type ArchiveSteadyState = 'SyncReady' | 'Archived' | 'Stopped';

interface VolumeMeta {
  version: 1;
  state: ArchiveSteadyState;
  /** uuid of the storage's log stream this archive follows (hex); diffs from another one are refused. */
  storageUuid: string;
  /** Identity of this archive's lineage, new at every full backup (hex). */
  archiveUuid: string;
  /** Absent until a full backup completed. */
  base?: { snapB: MetaSnap; snapE?: MetaSnap; timestamp: number };
  /** Volume size [LB]. */
  sizeLb: number;
}

/** What the archive answers a proxy that offers a diff (docs/servers.md §7.2). */
export type DiffVerdict = 'accept' | 'too-old-diff' | 'too-new-diff' | 'different-uuid' | 'archive-not-found';

const META = 'meta.json';
const BASE = 'base.img';
const RESTORED = 'restored';
const TMP_PREFIX = '.tmp-';
export class ArchiveVolumeStore {
  private diffs = new DiffSet();

  private constructor(
    readonly dir: string,
    readonly volume: string,
    private meta: VolumeMeta,
  ) {}

  /** init-vol: an empty volume in SyncReady. */
  static async init(dataDir: string, volume: string): Promise<ArchiveVolumeStore> {
    checkVolumeName(volume);
    const dir = path.join(dataDir, volume);
    if (fs.existsSync(path.join(dir, META))) throw new WalbError('ALREADY_EXISTS', `volume ${volume} exists`);
    await fs.promises.mkdir(path.join(dir, RESTORED), { recursive: true });
    const meta: VolumeMeta = { version: 1, state: 'SyncReady', storageUuid: '', archiveUuid: '', sizeLb: 0 };
    await writeJsonAtomic(path.join(dir, META), meta);
    await fsyncDir(dataDir);
    return new ArchiveVolumeStore(dir, volume, meta);
  }

  /**
   * Loads a volume and recovers from a crash: temporary files are removed, wdiffs are rebuilt from their names,
   * diffs no longer reachable from the base are collected. Inconsistencies are reported as CORRUPTION.
   */
  static async open(dataDir: string, volume: string): Promise<ArchiveVolumeStore> {
    checkVolumeName(volume);
    const dir = path.join(dataDir, volume);
    const meta = await readJson<VolumeMeta>(path.join(dir, META));
    if (!meta) throw new WalbError('NOT_FOUND', `no volume ${volume} in ${dataDir}`);
    if (meta.version !== 1) throw new WalbError('CORRUPTION', `${path.join(dir, META)}: unknown version`);
    if (meta.state !== 'SyncReady' && !meta.base)
      throw new WalbError('CORRUPTION', `volume ${volume} is ${meta.state} but has no base state`);
    if (meta.base && !fs.existsSync(path.join(dir, BASE)))
      throw new WalbError(
        'CORRUPTION',
        `volume ${volume}: the base image ${path.join(dir, BASE)} is missing`,
      );
    const store = new ArchiveVolumeStore(dir, volume, meta);
    await fs.promises.mkdir(path.join(dir, RESTORED), { recursive: true });
    for (const sub of [dir, path.join(dir, RESTORED)]) {
      for (const name of await fs.promises.readdir(sub)) {
        if (name.startsWith(TMP_PREFIX)) await fs.promises.rm(path.join(sub, name), { force: true });
      }
    }
    for (const name of await fs.promises.readdir(dir)) {
      if (!name.endsWith('.wdiff')) continue;
      const d = parseDiffFileName(name, (await fs.promises.stat(path.join(dir, name))).size);
      if (d) store.diffs.add(d);
    }
    await store.gc();
    return store;
  }

  get state(): ArchiveSteadyState {
    return this.meta.state;
  }

  get sizeLb(): number {
    return this.meta.sizeLb;
  }

  get storageUuid(): string {
    return this.meta.storageUuid;
  }

  get archiveUuid(): string {
    return this.meta.archiveUuid;
  }

  get baseImage(): string {
    return path.join(this.dir, BASE);
  }

  baseState(): MetaState | undefined {
    return this.meta.base;
  }

  allDiffs(): MetaDiff[] {
    return this.diffs.all();
  }

  async setState(state: ArchiveSteadyState): Promise<void> {
    await this.save({ ...this.meta, state });
  }

  // ---- full backup ----

  /** Creates (or grows) the sparse base image for a full backup of `sizeLb`; the caller writes the bulks. */
  async beginFullSync(sizeLb: number): Promise<string> {
    if (this.meta.state !== 'SyncReady')
      throw new WalbError(
        'FAILED_PRECONDITION',
        `volume ${this.volume} is ${this.meta.state}, needs SyncReady`,
      );
    const h = await fs.promises.open(this.baseImage, 'a');
    try {
      await h.truncate(0); // a new full backup replaces whatever was there
      await h.truncate(sizeLb * 512);
    } finally {
      await h.close();
    }
    return this.baseImage;
  }

  /** The scan is done: the base is `<|0,gidE|>`-like `snapshot`, a new archive lineage, state Archived. */
  async finishFullSync(
    snapshot: MetaSnap,
    timestamp: number,
    storageUuid: string,
    sizeLb: number,
  ): Promise<void> {
    const h = await fs.promises.open(this.baseImage, 'r+');
    try {
      await h.datasync();
    } finally {
      await h.close();
    }
    for (const d of this.diffs.all()) await this.deleteDiff(d); // an old lineage's diffs
    await this.save({
      ...this.meta,
      state: 'Archived',
      storageUuid,
      archiveUuid: crypto.randomBytes(16).toString('hex'),
      base: { snapB: snapshot, timestamp },
      sizeLb,
    });
  }

  // ---- diffs ----

  /** The snapshot the archive can reach now: the base with every applicable diff applied. */
  latestSnap(): MetaSnap {
    const base = this.requireBase();
    let s = base.snapE ?? base.snapB;
    for (const d of this.diffs.applicableChain(base.snapB)) s = applySnap(s, d);
    return s;
  }

  /** The archive's answer to a diff offered by a proxy (in the order of docs/servers.md §7.2). */
  checkDiff(d: MetaDiff, storageUuid: string): DiffVerdict {
    if (!this.meta.base) return 'archive-not-found';
    if (storageUuid !== this.meta.storageUuid) return 'different-uuid';
    const r = relation(this.latestSnap(), d);
    return r === 'applicable' ? 'accept' : r === 'too-old' ? 'too-old-diff' : 'too-new-diff';
  }

  /** A temporary path in the volume directory for a wdiff being received. */
  tempPath(what = 'wdiff'): string {
    return path.join(
      this.dir,
      `${TMP_PREFIX}${what}-${process.pid}-${crypto.randomBytes(6).toString('hex')}`,
    );
  }

  /** Moves a received, synced wdiff file to its final name and registers it. */
  async addDiff(tmpFile: string, d: MetaDiff): Promise<MetaDiff> {
    const size = (await fs.promises.stat(tmpFile)).size;
    const withSize = { ...d, dataSize: size };
    const final = path.join(this.dir, diffFileName(withSize));
    if (fs.existsSync(final)) throw new WalbError('ALREADY_EXISTS', `diff ${diffText(d)} exists`);
    await fs.promises.rename(tmpFile, final);
    await fsyncDir(this.dir);
    this.diffs.add(withSize);
    return withSize;
  }

  diffPath(d: MetaDiff): string {
    return path.join(this.dir, diffFileName(d));
  }

  /** Deletes diffs that no snapshot from the base can use any more. */
  async gc(): Promise<number> {
    const base = this.meta.base;
    if (!base) return 0;
    let n = 0;
    const chain = new Set(this.diffs.applicableChain(base.snapB));
    for (const d of this.diffs.all()) {
      if (chain.has(d)) continue;
      if (relation(base.snapB, d) === 'too-old' || this.supersededByChain(d, chain)) {
        await this.deleteDiff(d);
        n++;
      }
    }
    return n;
  }

  // ---- snapshots ----

  restorable(all = false): RestorableSnap[] {
    const base = this.meta.base;
    if (!base || this.meta.state === 'SyncReady') return [];
    return this.diffs.restorable(base, all);
  }

  restoredPath(gid: number): string {
    return path.join(this.dir, RESTORED, `${gid}.img`);
  }

  listRestored(): number[] {
    return fs
      .readdirSync(path.join(this.dir, RESTORED))
      .filter((n) => /^\d+\.img$/.test(n))
      .map((n) => Number(n.slice(0, -4)))
      .sort((a, b) => a - b);
  }

  /**
   * Restores snapshot `gid` into RESTORED/<gid>.img: a reflink (or copy) of the base, then the diffs of the chain
   * up to gid applied in order. The image appears under its name only when complete and synced.
   */
  async restore(gid: number, progress?: ProgressFn): Promise<string> {
    const base = this.requireBase();
    if (!this.restorable(true).some((r) => r.gid === gid))
      throw new WalbError('INVALID_ARGUMENT', `gid ${gid} of volume ${this.volume} is not restorable`);
    const out = this.restoredPath(gid);
    if (fs.existsSync(out))
      throw new WalbError('ALREADY_EXISTS', `snapshot ${gid} of ${this.volume} is restored`);
    const chain = this.diffs.applicableChain(base.snapB, gid);
    let s: MetaSnap = base.snapE ?? base.snapB;
    for (const d of chain) s = applySnap(s, d);
    if (!isCleanSnap(s) || s.gidB !== gid)
      throw new WalbError('INVALID_ARGUMENT', `the chain reaches ${snapText(s)}, not |${gid}|`);
    const tmp = path.join(this.dir, RESTORED, `${TMP_PREFIX}${gid}.img`);
    await fs.promises.copyFile(this.baseImage, tmp, fs.constants.COPYFILE_FICLONE);
    try {
      const total = chain.reduce((a, d) => a + d.dataSize, 0);
      let done = 0;
      for (const d of chain) {
        await native.wdiffRedo(this.diffPath(d), tmp, { discard: 'zero' });
        done += d.dataSize;
        progress?.(done, total);
      }
      const h = await fs.promises.open(tmp, 'r+');
      try {
        await h.datasync();
      } finally {
        await h.close();
      }
      await fs.promises.rename(tmp, out);
      await fsyncDir(path.dirname(out));
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
    return out;
  }

  async delRestored(gid: number): Promise<void> {
    const p = this.restoredPath(gid);
    if (!fs.existsSync(p))
      throw new WalbError('NOT_FOUND', `snapshot ${gid} of ${this.volume} is not restored`);
    await fs.promises.rm(p);
    await fsyncDir(path.dirname(p));
  }

  // ---- internals ----

  private requireBase(): MetaState {
    if (!this.meta.base)
      throw new WalbError(
        'FAILED_PRECONDITION',
        `volume ${this.volume} has no base image yet (full backup first)`,
      );
    return this.meta.base;
  }

  /** A diff off the chain whose whole range the chain covers (a shorter duplicate of a re-sent range). */
  private supersededByChain(d: MetaDiff, chain: Set<MetaDiff>): boolean {
    for (const c of chain)
      if (c.snapB.gidB <= d.snapB.gidB && d.snapE.gidB <= c.snapE.gidB && c !== d) return true;
    return false;
  }

  private async deleteDiff(d: MetaDiff): Promise<void> {
    await fs.promises.rm(this.diffPath(d), { force: true });
    this.diffs.remove(d);
  }

  private async save(meta: VolumeMeta): Promise<void> {
    await writeJsonAtomic(path.join(this.dir, META), meta);
    this.meta = meta;
  }
}
