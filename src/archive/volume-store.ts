// The archive's files of one volume (docs/servers.md §6.1, §6.4, §10.1): a sparse base image, the wdiff chain beside it
// (file names carry the metadata), restored snapshots as image files, and meta.json for the rest. Every change is
// atomic on disk (temp file, fsync, rename, fsync the directory), so a kill -9 at any point leaves either the old
// or the new state; open() cleans up what a crash left behind. What to accept, restore or collect is
// decided in policy.ts; this module only carries it out on the files.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, readJson, writeJsonAtomic } from '../common/atomic-file';
import { WalbError } from '../common/errors';
import type { PhaseTimes } from '../common/log';
import { checkVolumeName } from '../common/volume-name';
import {
  DiffSet,
  diffFileName,
  diffText,
  parseDiffFileName,
  snap,
  type MetaDiff,
  type MetaSnap,
  type MetaState,
} from '../common/meta';
import { native, type ProgressFn } from '../native';
import {
  diffsToCollect,
  fullReplicationResume,
  keptVerifications,
  metaInconsistency,
  restorableSnaps,
  restoreChain,
  type ArchiveSteadyState,
  type StoredVolume,
  type Verification,
} from './policy';

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
  /**
   * A full replication in progress (docs/servers.md §7.7): its source's lineage and base state, and the offset
   * below which the base image is durable, so that a rerun of the same one resumes there.
   */
  fullRepl?: { archiveUuid: string; base: MetaState; sizeLb: number; offset: number };
}

/** What a full replication's source sends: its lineage, its log stream and the state of its base image. */
export interface ReplicaBase {
  archiveUuid: string;
  storageUuid: string;
  base: MetaState;
  sizeLb: number;
}

/** Waits until `done` bytes of work that started at `startedMs` fit `bytesPerSec` (0: no wait). */
export async function throttle(done: number, startedMs: number, bytesPerSec: number): Promise<void> {
  if (!bytesPerSec) return;
  const ahead = (done / bytesPerSec) * 1000 - (Date.now() - startedMs);
  if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
}

const META = 'meta.json';
const VERIFIED = 'verified.json';
/** Verify hashes as `walb-tool hash` does by default, so that the two compare (docs/formats.md §7.1). */
const VERIFY_HASH = { chunkSize: 256 << 10, seed: 0 };
const BASE = 'base.img';
const RESTORED = 'restored';
const TMP_PREFIX = '.tmp-';

export class ArchiveVolumeStore implements StoredVolume {
  /** The wdiffs in the volume's directory, kept in step with the files. */
  readonly diffs = new DiffSet();
  /** The metadata write in progress; the next one starts after it. */
  private metaLock: Promise<unknown> = Promise.resolve();
  /** The verified.json write in progress, likewise. */
  private verifiedLock: Promise<unknown> = Promise.resolve();

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

  /** The volumes of a data directory: every directory with a meta.json (docs/servers.md §6.4). */
  static volumesIn(dataDir: string): string[] {
    fs.mkdirSync(dataDir, { recursive: true });
    return fs.readdirSync(dataDir).filter((name) => fs.existsSync(path.join(dataDir, name, META)));
  }

  /** Deletes a volume's directory, restored images included (ClearVol, ResetVol). */
  static async remove(dataDir: string, volume: string): Promise<void> {
    checkVolumeName(volume);
    await fs.promises.rm(path.join(dataDir, volume), { recursive: true, force: true });
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
    const image = path.join(dir, BASE);
    const problem = metaInconsistency(meta, fs.existsSync(image));
    if (problem === 'unknown-version')
      throw new WalbError('CORRUPTION', `${path.join(dir, META)}: unknown version`);
    if (problem === 'no-base-state')
      throw new WalbError('CORRUPTION', `volume ${volume} is ${meta.state} but has no base state`);
    if (problem === 'base-image-missing')
      throw new WalbError('CORRUPTION', `volume ${volume}: the base image ${image} is missing`);
    const store = new ArchiveVolumeStore(dir, volume, meta);
    await fs.promises.mkdir(path.join(dir, RESTORED), { recursive: true });
    for (const sub of [dir, path.join(dir, RESTORED)]) {
      for (const name of await fs.promises.readdir(sub)) {
        // Also a native writer's own temporary of such a file ('.' + its name).
        if (name.startsWith(TMP_PREFIX) || name.startsWith(`.${TMP_PREFIX}`))
          await fs.promises.rm(path.join(sub, name), { force: true });
      }
    }
    for (const name of await fs.promises.readdir(dir)) {
      if (!name.endsWith('.wdiff')) continue;
      const d = parseDiffFileName(name, (await fs.promises.stat(path.join(dir, name))).size);
      if (d) store.diffs.add(d);
    }
    await store.gc();
    if (store.meta.base?.snapE) await store.finishApplying();
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

  get base(): MetaState | undefined {
    return this.meta.base;
  }

  get baseImage(): string {
    return path.join(this.dir, BASE);
  }

  async setState(state: ArchiveSteadyState): Promise<void> {
    await this.update((m) => ({ ...m, state }));
  }

  // ---- resize ----

  /**
   * Grows the base image to `sizeLb` (sparsely; with `zeroClear` the new area is written as zeros), synced, then
   * the stored size. A crash in between leaves the image larger than the stored size, the new area zeros: harmless,
   * and the operator repeats the resize (docs/servers.md §6.3).
   */
  async grow(sizeLb: number, zeroClear: boolean): Promise<void> {
    await native.growImage(this.baseImage, {
      fromBytes: this.meta.sizeLb * 512,
      toBytes: sizeLb * 512,
      zeroClear,
    });
    await this.update((m) => ({ ...m, sizeLb }));
  }

  // ---- full backup ----

  /** Creates (or grows) the sparse base image for a full backup of `sizeLb`; the caller writes the bulks. */
  async beginFullSync(sizeLb: number): Promise<string> {
    if (this.meta.state !== 'SyncReady')
      throw new WalbError(
        'FAILED_PRECONDITION',
        `volume ${this.volume} is ${this.meta.state}, needs SyncReady`,
      );
    // An interrupted full replication cannot resume on the image this one writes.
    if (this.meta.fullRepl) await this.update((m) => ({ ...m, fullRepl: undefined }));
    const h = await fs.promises.open(this.baseImage, 'a');
    try {
      await h.truncate(0); // a new full backup replaces whatever was there
      await h.truncate(sizeLb * 512);
    } finally {
      await h.close();
    }
    return this.baseImage;
  }

  /**
   * Writes bulks into the base image of `sizeLb` at their offsets (a full backup's on the FullSync stream, a
   * resync's differing chunks), with an fdatasync every `syncEveryBytes`. Close it in every case.
   */
  async baseImageWriter(
    sizeLb: number,
    syncEveryBytes: number,
    onSynced?: (durableBelow: number) => Promise<void>,
  ): Promise<BaseImageWriter> {
    return new BaseImageWriter(
      await fs.promises.open(this.baseImage, 'r+'),
      sizeLb * 512,
      syncEveryBytes,
      onSynced,
    );
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
    await this.update((m) => ({
      ...m,
      state: 'Archived',
      storageUuid,
      archiveUuid: crypto.randomBytes(16).toString('hex'),
      base: { snapB: snapshot, timestamp },
      sizeLb,
    }));
  }

  // ---- full replication (docs/servers.md §7.7) ----

  /**
   * Prepares the base image for a full replication of `replica` and returns the byte offset it starts from: where
   * an interrupted one of the same source lineage and base state stopped (the image kept), else 0 (the image
   * emptied). The resume point is written before any byte.
   */
  async beginFullReplication(replica: ReplicaBase): Promise<number> {
    if (this.meta.state !== 'SyncReady')
      throw new WalbError(
        'FAILED_PRECONDITION',
        `volume ${this.volume} is ${this.meta.state}, needs SyncReady`,
      );
    const offset = fs.existsSync(this.baseImage) ? fullReplicationResume(this.meta.fullRepl, replica) : 0;
    const h = await fs.promises.open(this.baseImage, 'a');
    try {
      if (offset === 0) await h.truncate(0);
      await h.truncate(replica.sizeLb * 512);
    } finally {
      await h.close();
    }
    const { archiveUuid, base, sizeLb } = replica;
    await this.update((m) => ({ ...m, sizeLb, fullRepl: { archiveUuid, base, sizeLb, offset } }));
    return offset;
  }

  /** The base image is durable below `offset`: a rerun of the same full replication resumes there. */
  async saveFullReplicationOffset(offset: number): Promise<void> {
    await this.update((m) => (m.fullRepl ? { ...m, fullRepl: { ...m.fullRepl, offset } } : m));
  }

  /** The image is complete: it takes the source's base state, archive uuid and storage uuid, state Archived. */
  async finishFullReplication(replica: ReplicaBase): Promise<void> {
    const h = await fs.promises.open(this.baseImage, 'r+');
    try {
      await h.datasync();
    } finally {
      await h.close();
    }
    for (const d of this.diffs.all()) await this.deleteDiff(d);
    await this.update((m) => ({
      version: m.version,
      state: 'Archived',
      storageUuid: replica.storageUuid,
      archiveUuid: replica.archiveUuid,
      base: replica.base,
      sizeLb: replica.sizeLb,
    }));
  }

  // ---- hash backup ----

  /** The diffs a virtual read of the latest snapshot needs, in order (base image first). */
  latestChainFiles(): string[] {
    if (!this.meta.base)
      throw new WalbError('FAILED_PRECONDITION', `volume ${this.volume} has no base image`);
    return this.diffs.applicableChain(this.meta.base.snapB).map((d) => this.diffPath(d));
  }

  /**
   * A hash backup's dirty wdiff (complete and synced in `file`) joins the chain, and the archive follows the
   * storage's new log stream. The uuid is written first: a crash between the two leaves the old chain, whose
   * next diffs (of the new stream) wait as too new until a hash backup runs again.
   */
  async finishHashSync(file: string, d: MetaDiff, storageUuid: string): Promise<MetaDiff> {
    await this.update((m) => ({ ...m, storageUuid }));
    return this.addDiff(file, d);
  }

  // ---- resync ----

  /**
   * The first part of a resync of an Archived volume (docs/servers.md §7.7.1): its restored images and all its
   * wdiffs go; the base image and its base state stay, the hashes compare against them. The caller commits
   * SyncReady next, so a crash in between leaves an Archived volume with its base alone, still consistent.
   */
  async dropForResync(): Promise<void> {
    for (const gid of this.listRestored()) await fs.promises.rm(this.restoredPath(gid), { force: true });
    await fsyncDir(path.join(this.dir, RESTORED));
    for (const d of this.diffs.all()) await this.deleteDiff(d);
    await fsyncDir(this.dir);
  }

  /**
   * Gives the base image the source's size before a resync compares it (grown sparsely, or cut when the source is
   * smaller), synced, and stores that size. Only while SyncReady: nothing restorable depends on the image then.
   */
  async beginResync(sizeLb: number): Promise<void> {
    if (this.meta.state !== 'SyncReady' || !this.meta.base)
      throw new WalbError(
        'FAILED_PRECONDITION',
        `volume ${this.volume} is ${this.meta.state}, needs SyncReady with a base image`,
      );
    const h = await fs.promises.open(this.baseImage, 'r+');
    try {
      if ((await h.stat()).size !== sizeLb * 512) {
        await h.truncate(sizeLb * 512);
        await h.datasync();
      }
    } finally {
      await h.close();
    }
    if (this.meta.sizeLb !== sizeLb) await this.update((m) => ({ ...m, sizeLb }));
  }

  /**
   * The base image is fixed (its chunks written): synced, then the source's lineage is adopted in one metadata
   * write — its base state, archive uuid and storage uuid — and the state is Archived.
   */
  async finishResync(replica: { base: MetaState; archiveUuid: string; storageUuid: string }): Promise<void> {
    const h = await fs.promises.open(this.baseImage, 'r+');
    try {
      await h.datasync();
    } finally {
      await h.close();
    }
    await this.update((m) => ({
      ...m,
      state: 'Archived',
      storageUuid: replica.storageUuid,
      archiveUuid: replica.archiveUuid,
      base: replica.base,
    }));
  }

  // ---- diffs ----

  /**
   * A diff step of a replication (docs/servers.md §7.7): the source's storage uuid is written first (a crash
   * before the diff leaves the old chain, which the rerun extends), then the diff is received as from a proxy, then
   * the diffs it covers are collected.
   */
  async receiveReplicaDiff(
    chunks: AsyncIterable<Buffer>,
    d: MetaDiff,
    storageUuid: string,
    phases?: PhaseTimes,
  ): Promise<MetaDiff> {
    // Written once per lineage: the diff steps after the first find it there already.
    if (this.meta.storageUuid !== storageUuid) await this.update((m) => ({ ...m, storageUuid }));
    phases?.lap('meta');
    const added = await this.receiveDiff(chunks, d, phases);
    await this.gc();
    phases?.lap('gc');
    return added;
  }

  /** A temporary path in the volume directory for a wdiff being received. */
  tempPath(what = 'wdiff'): string {
    return path.join(
      this.dir,
      `${TMP_PREFIX}${what}-${process.pid}-${crypto.randomBytes(6).toString('hex')}`,
    );
  }

  /**
   * Receives wdiff `d`: its bytes into a temporary file, synced, the whole wdiff verified (docs/formats.md §5),
   * then addDiff. Nothing is left behind when any step fails. `phases` times each of those steps.
   */
  async receiveDiff(chunks: AsyncIterable<Buffer>, d: MetaDiff, phases?: PhaseTimes): Promise<MetaDiff> {
    const tmp = this.tempPath();
    try {
      const fh = await fs.promises.open(tmp, 'w');
      try {
        for await (const data of chunks) await fh.write(data);
        phases?.lap('receive');
        await fh.datasync();
        phases?.lap('fsync');
      } finally {
        await fh.close();
      }
      await native.wdiffVerify(tmp);
      phases?.lap('verify');
      const added = await this.addDiff(tmp, d);
      phases?.lap('rename');
      return added;
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
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

  /** Deletes the diffs that no snapshot from the base can use any more (policy.diffsToCollect). */
  async gc(): Promise<number> {
    const collected = diffsToCollect(this.meta.base, this.diffs);
    for (const d of collected) await this.deleteDiff(d);
    return collected.length;
  }

  // ---- apply, merge, snapshot flags (docs/servers.md §6.6, §6.7) ----

  /**
   * Writes the diffs up to the clean snapshot |gid| into the base image in place (policy.applyChain says which):
   * the base state "applying B --> |gid|" is written first, so that a crash at any point leaves a state that open()
   * finishes by the same redo (each diff writes absolute contents, so replaying the whole list in order again gives
   * the same bytes); then the base is |gid| and the consumed diffs are deleted.
   */
  async apply(gid: number, opts: { progress?: ProgressFn; bytesPerSec?: number } = {}): Promise<void> {
    const base = this.meta.base;
    if (!base || base.snapE)
      throw new WalbError('FAILED_PRECONDITION', `volume ${this.volume} has no base image to apply to`);
    restoreChain(this.volume, this, gid);
    await this.update((m) => ({ ...m, base: { ...base, snapE: snap(gid) } }));
    await this.finishApplying(opts);
  }

  /**
   * Redoes the applying list of the base state into the base image, synced, then commits its end. With
   * `bytesPerSec`, each diff waits until the bytes written so far fit the rate.
   */
  private async finishApplying(opts: { progress?: ProgressFn; bytesPerSec?: number } = {}): Promise<void> {
    const end = this.meta.base!.snapE!;
    const chain = restoreChain(this.volume, this, end.gidB);
    const total = chain.reduce((a, d) => a + d.dataSize, 0);
    const started = Date.now();
    let done = 0;
    for (const d of chain) {
      await native.wdiffRedo(this.diffPath(d), this.baseImage, { discard: 'zero' });
      done += d.dataSize;
      opts.progress?.(done, total);
      await throttle(done, started, opts.bytesPerSec ?? 0);
    }
    const h = await fs.promises.open(this.baseImage, 'r+');
    try {
      await h.datasync();
    } finally {
      await h.close();
    }
    const timestamp = chain.length ? chain[chain.length - 1].timestamp : this.meta.base!.timestamp;
    await this.update((m) => ({ ...m, base: { snapB: end, timestamp } }));
    await this.gc();
    await fsyncDir(this.dir);
  }

  /**
   * Merges `diffs` (policy.mergeRun) into one sorted wdiff `merged`: written and synced under a temporary name,
   * renamed in, then the inputs deleted. A crash between the two leaves both; the merged diff is on the chain and
   * covers the inputs, so the gc of open() deletes them.
   */
  async merge(diffs: MetaDiff[], merged: MetaDiff, progress?: ProgressFn): Promise<MetaDiff> {
    const tmp = this.tempPath();
    let added: MetaDiff;
    try {
      await native.wdiffMerge(
        diffs.map((d) => this.diffPath(d)),
        tmp,
        { compression: 'snappy' },
        progress,
      );
      added = await this.addDiff(tmp, merged);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
    for (const d of diffs) await this.deleteDiff(d);
    await fsyncDir(this.dir);
    return added;
  }

  /** Flips the isMergeable flag of `diffs` by renaming their files (the flag is in the name, docs/formats.md §6). */
  async setMergeable(diffs: MetaDiff[], isMergeable: boolean): Promise<void> {
    for (const d of diffs) {
      const flipped = { ...d, isMergeable };
      await fs.promises.rename(this.diffPath(d), this.diffPath(flipped));
      this.diffs.remove(d);
      this.diffs.add(flipped);
    }
    await fsyncDir(this.dir);
  }

  /** Bytes on disk of the base image, the wdiffs and the restored images (allocated blocks: images are sparse). */
  diskUsage(): { baseBytes: number; diffBytes: number; restoredBytes: number } {
    const used = (file: string) => {
      try {
        return fs.statSync(file).blocks * 512;
      } catch {
        return 0;
      }
    };
    return {
      baseBytes: used(this.baseImage),
      diffBytes: this.diffs.all().reduce((a, d) => a + used(this.diffPath(d)), 0),
      restoredBytes: this.listRestored().reduce((a, gid) => a + used(this.restoredPath(gid)), 0),
    };
  }

  // ---- snapshots ----

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
   * up to gid (policy.restoreChain) applied in order. The image appears under its name only when complete and
   * synced.
   */
  async restore(gid: number, progress?: ProgressFn): Promise<string> {
    const chain = restoreChain(this.volume, this, gid);
    const out = this.restoredPath(gid);
    if (fs.existsSync(out))
      throw new WalbError('ALREADY_EXISTS', `snapshot ${gid} of ${this.volume} is restored`);
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

  // ---- verification (docs/servers.md §6.9) ----

  /**
   * The whole-image hash (hex) of snapshot `gid`, read virtually: the base image with the diffs of its restore
   * chain laid over it, nothing written. Every record the read meets has its checksum checked by the native
   * reader, so a damaged wdiff fails with CORRUPTION (or TRUNCATED) and a message naming the file.
   */
  async hashSnapshot(gid: number, progress?: ProgressFn): Promise<string> {
    const chain = restoreChain(this.volume, this, gid);
    const image = new native.VirtualFull(
      this.baseImage,
      chain.map((d) => this.diffPath(d)),
    );
    try {
      return (await image.hash(VERIFY_HASH, progress)).whole.toString('hex');
    } finally {
      image.close();
    }
  }

  /** The last verification of each snapshot, as saved; empty when none was made. */
  async verifications(): Promise<Verification[]> {
    return (await readJson<Verification[]>(path.join(this.dir, VERIFIED))) ?? [];
  }

  /** Saves `latest` atomically beside the others that still count (policy.keptVerifications), one write at a time. */
  saveVerification(latest: Verification): Promise<void> {
    const run = this.verifiedLock.then(async () => {
      const restorable = restorableSnaps(this, true).map((r) => r.gid);
      const kept = keptVerifications(await this.verifications(), latest, restorable);
      await writeJsonAtomic(path.join(this.dir, VERIFIED), kept);
    });
    this.verifiedLock = run.catch(() => undefined);
    return run;
  }

  async delRestored(gid: number): Promise<void> {
    const p = this.restoredPath(gid);
    if (!fs.existsSync(p))
      throw new WalbError('NOT_FOUND', `snapshot ${gid} of ${this.volume} is not restored`);
    await fs.promises.rm(p);
    await fsyncDir(path.dirname(p));
  }

  // ---- internals ----

  private async deleteDiff(d: MetaDiff): Promise<void> {
    await fs.promises.rm(this.diffPath(d), { force: true });
    this.diffs.remove(d);
  }

  /**
   * Writes `change` of the newest metadata atomically, one write at a time: a state committed while a resize
   * writes the size keeps the new size, and the reverse.
   */
  private update(change: (m: VolumeMeta) => VolumeMeta): Promise<void> {
    const run = this.metaLock.then(async () => {
      const meta = change(this.meta);
      await writeJsonAtomic(path.join(this.dir, META), meta);
      this.meta = meta;
    });
    this.metaLock = run.catch(() => undefined);
    return run;
  }
}

/**
 * The base image of a full backup whose bulks come on the stream: each written at its offset. Bulks come in
 * address order, so after each sync everything below the end of the last bulk is durable (`onSynced` hears it).
 */
export class BaseImageWriter {
  private unsynced = 0;
  private written = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly sizeBytes: number,
    private readonly syncEveryBytes: number,
    private readonly onSynced?: (durableBelow: number) => Promise<void>,
  ) {}

  async write(offset: number, data: Buffer): Promise<void> {
    if (offset % 512 !== 0 || offset + data.length > this.sizeBytes)
      throw new WalbError('INVALID_ARGUMENT', `bulk at ${offset} (+${data.length}) is outside the volume`);
    await this.fh.write(data, 0, data.length, offset);
    this.unsynced += data.length;
    this.written = Math.max(this.written, offset + data.length);
    if (this.unsynced >= this.syncEveryBytes) {
      await this.fh.datasync();
      this.unsynced = 0;
      await this.onSynced?.(this.written);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
