// Typed access to the C++ addon (native/). Every heavy call returns a Promise and runs on the thread pool.
// 64-bit values come back as numbers; only values above 2^53 (in practice the "invalid lsid" marker 2^64-1)
// come back as bigint.
import path from 'node:path';
import type { NbdTransmission, TransmissionLimits, TransmissionStats } from '../nbd/types';

export type U64 = number | bigint;
export type ProgressFn = (done: number, total: number) => void;

export interface SuperSector {
  pbs: number;
  salt: number;
  uuid: string;
  name: string;
  ringBufferSize: number;
  ringBufferOffset: number;
  oldestLsid: number;
  writtenLsid: number;
  deviceSize: number;
}

export interface WlogHeader {
  pbs: number;
  salt: number;
  uuid: string;
  beginLsid: number;
  endLsid: U64;
}

export interface LogRecord {
  kind: 'normal' | 'padding' | 'discard';
  offset: number;
  ioSize: number;
  lsid: number;
  lsidLocal: number;
  checksum: number;
}

export interface Logpack {
  lsid: number;
  totalIoSize: number;
  nRecords: number;
  nPadding: number;
  checksum: number;
  records: LogRecord[];
}

export interface DiffStats {
  records: number;
  dataBlocks: number;
  allZeroBlocks: number;
  discardBlocks: number;
  storedBytes: number;
  fileBytes: number;
}

export interface StoredDiffRecord {
  address: number;
  blocks: number;
  kind: 'normal' | 'allzero' | 'discard';
  compression: Compression;
  dataOffset: number;
  dataSize: number;
  ioOffset: number;
  origBlocks: number;
}

export type Compression = 'none' | 'snappy' | 'zstd' | 'lz4' | 'gzip' | 'lzma';
export type DiscardMode = 'ignore' | 'passdown' | 'zero';

export interface DiffWriteOptions {
  compression?: Compression;
  level?: number;
  maxIoBlocks?: number;
}

export interface GenOptions {
  deviceSize?: number; // LB
  amount?: number; // bytes of written data
  pbs?: number;
  minIoSize?: number; // LB
  maxIoSize?: number; // LB
  discardRatio?: number;
  allZeroRatio?: number;
  overlapRatio?: number;
  flushRatio?: number;
  data?: 'random' | 'compressible' | 'zero';
  lsid?: number;
  ringBufferSize?: number; // PB; 0 = no ring padding
  maxLogpackPb?: number;
  maxIosPerPack?: number;
  seed?: number;
  salt?: number;
}

export interface GenResult {
  beginLsid: number;
  endLsid: number;
  packs: number;
  ios: number;
  bytes: number;
  discards: number;
  paddings: number;
  salt: number;
}

export interface WlogVerifyResult {
  header: WlogHeader;
  packs: number;
  records: number;
  paddings: number;
  discards: number;
  dataBytes: number;
  endLsid: number;
  endBlock: boolean;
}

export interface ConvertResult extends DiffStats {
  beginLsid: number;
  endLsid: number;
  packs: number;
  inputBytes: number;
  spills: number;
}

export interface RedoResult {
  records: number;
  writtenBytes: number;
  zeroedBytes: number;
  discardedBytes: number;
  beginLsid: number;
  endLsid: number;
}

export interface HashOptions {
  seed?: U64;
  chunkSize?: number;
  offset?: number;
  length?: number;
  chunks?: boolean;
}

export interface HashResult {
  whole: Buffer;
  bytes: number;
  chunkSize: number;
  chunks?: Buffer; // 16 bytes per chunk
}

export interface ExtractResult {
  beginLsid: number;
  endLsid: number;
  packs: number;
  bytes: number;
  shrunk: boolean;
}

/**
 * A native object holding open files until close(). close() is idempotent and never fails; with a call still
 * running the files close when it settles. Afterwards every method fails with INVALID_ARGUMENT (synchronous ones
 * throw, the others reject). Close in a finally: the garbage collector would close the files only at its leisure.
 */
export interface Closable {
  close(): void;
}

export interface WlogFile extends Closable {
  header(): WlogHeader;
  next(maxPacks?: number): Promise<Logpack[]>;
}

export interface WdiffHeader {
  type: 'sorted' | 'indexed';
  uuid: string;
}

export interface WdiffFile extends Closable {
  header(): WdiffHeader;
  next(maxRecords?: number): Promise<StoredDiffRecord[]>;
}

export interface VirtualFull extends Closable {
  size(): number;
  read(range: { offset: number; length: number }): Promise<Buffer>;
  hash(opts?: HashOptions, progress?: ProgressFn): Promise<HashResult>;
}

export interface WdevOptions {
  /** Overrides the name in the super sector. */
  name?: string;
  maxLogpackKb?: number;
  maxPendingBytes?: number;
  logFlushIntervalBytes?: number;
  logFlushIntervalMs?: number;
  /** 0 disables periodic checkpoints. */
  checkpointIntervalMs?: number;
  errorBeforeOverflow?: boolean;
}

export interface WdevLsids {
  latest: number;
  completed: number;
  flush: number;
  permanent: number;
  written: number;
  prevWritten: number;
  oldest: number;
}

export interface WdevStatus {
  name: string;
  super: SuperSector;
  lsids: WdevLsids;
  /** [LB] */
  deviceSize: number;
  /** ring buffer size [PB] */
  logCapacity: number;
  /** latest - oldest [PB] */
  logUsage: number;
  pendingBytes: number;
  checkpointInterval: number;
  overflow: boolean;
  frozen: boolean;
  failed: boolean;
  failure: string;
}

export interface WdevRedoResult {
  beginLsid: number;
  endLsid: number;
  packs: number;
  records: number;
  bytes: number;
  shrunk: boolean;
  discardedPack: boolean;
  scrubbedBlocks: number;
}

/** The NBD transmission phase of one connection in C++ over an export's backend (the fd is duplicated). */
export type NativeServe = (
  fd: number,
  pending: Buffer,
  limits: TransmissionLimits,
  onClose: (stats: TransmissionStats) => void,
) => NbdTransmission;

/**
 * How long the NBD requests of an export took, from received whole to completed by the device, per command:
 * `bounds` are the buckets' upper bounds in seconds; each command's `counts` has one count per bound and a last one
 * above every bound (not cumulative), and `sum` is the total in seconds.
 */
export interface NbdLatency {
  bounds: number[];
  commands: { command: string; counts: number[]; sum: number }[];
}

/** The C++ device. I/O reaches it only through NBD connections (`serve`); `close` ends them first. */
export interface NativeWdev {
  open(ldev: string, ddev: string, opts: WdevOptions): Promise<WdevRedoResult>;
  status(): Promise<WdevStatus>;
  setOldestLsid(lsid: U64): Promise<WdevStatus>;
  takeCheckpoint(): Promise<WdevStatus>;
  setCheckpointInterval(ms: number): Promise<WdevStatus>;
  resetWal(): Promise<WdevStatus>;
  freeze(timeoutSec: number): Promise<WdevStatus>;
  melt(): Promise<WdevStatus>;
  resize(sizeLb: U64): Promise<WdevStatus>;
  close(): Promise<WdevStatus>;
  serve: NativeServe;
  /** The durations of the NBD requests served since the device was opened, the ended connections' included. */
  nbdLatency(): NbdLatency;
}

/**
 * A rule of the file export's fault injection (tests): requests of `op` (any if absent) overlapping
 * [offset, offset + length) (any if neither is given; flush has no range) run `delayMs` later, or fail with `error`.
 */
export interface NbdFileFault {
  op?: 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes';
  offset?: number;
  length?: number;
  delayMs?: number;
  error?: 'EPERM' | 'EIO' | 'ENOMEM' | 'EINVAL' | 'ENOSPC' | 'ESHUTDOWN';
}

export interface NbdFileOptions {
  readOnly?: boolean;
  /** Worker threads running the requests (default 4). */
  threads?: number;
  faults?: NbdFileFault[];
  /** Keep every request for calls() (tests). */
  record?: boolean;
}

export interface NbdFileCall {
  op: 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes';
  offset: number;
  length: number;
  fua: boolean;
}

export interface NbdFileStats {
  requests: number;
  pending: number;
  pendingBytes: number;
  maxPendingBytes: number;
}

/** A file or block device as an NBD backend (native/src/core/nbd_file_backend.hpp). */
export interface NativeNbdFile {
  readonly size: number;
  readonly readOnly: boolean;
  serve: NativeServe;
  /** Park every request until release() (tests). */
  hold(): void;
  release(): void;
  stats(): NbdFileStats;
  calls(): NbdFileCall[];
  /** Requests queued, and any sent later, fail with ESHUTDOWN. */
  close(): void;
}

/**
 * A restorable snapshot (a base image and the wdiffs its restore applies, oldest first) as a read-only NBD
 * backend read at random (native/src/core/snapshot_image.hpp, nbd_snapshot_backend.hpp). Nothing works before
 * open() has resolved; close() stops it.
 */
export interface NativeNbdSnapshot {
  /** Builds the table of extents on the thread pool; rejects CORRUPTION, TRUNCATED or IO_ERROR. */
  open(): Promise<void>;
  readonly size: number;
  /** Pieces of the table and records indexed (the memory the export holds). */
  indexed(): { extents: number; storedImages: number };
  read(range: { offset: number; length: number }): Promise<Buffer>;
  serve: NativeServe;
  /** Reads queued, and any sent later, fail with ESHUTDOWN. */
  close(): void;
}

/** PEM texts (not file names) for the bulk path; all empty or absent: plaintext. */
export interface TlsPem {
  ca?: string;
  cert?: string;
  key?: string;
}

/** Sends bytes [from, size) of a file to a BulkReceiver over gRPC from C++ threads (src/bulk/ of the addon). */
export interface BulkSender {
  /** Rejects with UNAVAILABLE (receiver gone, timed out, refused), CANCELLED, IO_ERROR or INVALID_ARGUMENT. */
  run(progress?: ProgressFn): Promise<{ scanned: number; sent: number }>;
  cancel(): void;
  /** Bytes handed to gRPC so far: 0 while the receiver was never reached. */
  sent(): number;
}

export interface BulkSenderOptions {
  /** HOST:PORT of the receiver. */
  target: string;
  /** Full gRPC method name. */
  method: string;
  token: string;
  path: string;
  size: number;
  /** Where the scan starts (a multiple of 512; a resumed full replication), default 0. */
  from?: number;
  bulk?: number;
  /** Read rate limit, 0 = none. */
  bytesPerSec?: number;
  /** Longest wait for the receiver (its final answer gets six times as long). */
  timeoutSec?: number;
  tls?: TlsPem;
}

export interface BulkOutcome {
  state: 'waiting' | 'running' | 'done' | 'failed';
  bytes: number;
  /** Every byte below it is written and synced (the bulks come in address order). */
  durable: number;
  error?: string;
}

/** A gRPC server of its own that writes the bulks of expected transfers into their files. */
export interface BulkReceiver {
  port(): number;
  expect(token: string, target: { path: string; size: number; syncEveryBytes?: number }): void;
  outcome(token: string): BulkOutcome;
  /** Drops the token and cancels a stream still writing for it. */
  forget(token: string): void;
  close(): void;
}

export interface NativeAddon {
  checksum(data: Buffer, salt?: number): number;
  formatLdev(ldev: string, opts: { pbs?: number; deviceSize?: number; name?: string; discard?: boolean }): Promise<SuperSector>;
  readSuper(ldev: string): Promise<SuperSector>;
  wlogGen(output: string, opts: GenOptions, progress?: ProgressFn): Promise<GenResult>;
  wlogVerify(wlog: string, progress?: ProgressFn): Promise<WlogVerifyResult>;
  wlogToWdiff(
    inputs: string[],
    output: string,
    opts: DiffWriteOptions & { indexed?: boolean; memoryLimit?: number; tempDir?: string },
    progress?: ProgressFn,
  ): Promise<ConvertResult>;
  wlogRedo(wlog: string, image: string, opts: { discard?: DiscardMode }, progress?: ProgressFn): Promise<RedoResult>;
  wdiffMerge(inputs: string[], output: string, opts: DiffWriteOptions, progress?: ProgressFn): Promise<DiffStats>;
  wdiffVerify(wdiff: string, progress?: ProgressFn): Promise<DiffStats>;
  wdiffRedo(wdiff: string, image: string, opts: { discard?: DiscardMode }, progress?: ProgressFn): Promise<RedoResult>;
  hashImage(image: string, opts: HashOptions, progress?: ProgressFn): Promise<HashResult>;
  /**
   * Grows an image file from fromBytes to toBytes (sparsely); with zeroClear the new range is written as zeros.
   * Synced before it resolves with the bytes zeroed.
   */
  growImage(image: string, opts: { fromBytes: U64; toBytes: U64; zeroClear?: boolean }): Promise<number>;
  ldevExtract(
    ldev: string,
    output: string,
    opts: { beginLsid?: U64; endLsid?: U64 },
    progress?: ProgressFn,
  ): Promise<ExtractResult>;
  ldevRestore(wlog: string, ldev: string): Promise<number>;
  /**
   * Logs [beginLsid, endLsid) of a log device that must all be valid (CORRUPTION otherwise), as a wlog body
   * (pack after pack); stops after maxBytes (default 8 MiB, at least one pack) at nextLsid.
   */
  ldevReadLogs(
    ldev: string,
    opts: {
      beginLsid: number;
      endLsid: number;
      maxBytes?: number;
      /** exact: endLsid is a pack boundary; up-to: stop before a pack that passes it (optionally taking a first one). */
      end?: 'exact' | 'up-to' | 'up-to-at-least-one';
    },
  ): Promise<{ super: SuperSector; data: Buffer; beginLsid: number; nextLsid: number; packs: number }>;
  WlogFile: new (path: string) => WlogFile;
  WdiffFile: new (path: string) => WdiffFile;
  VirtualFull: new (base: string, diffs: string[]) => VirtualFull;
  Wdev: new () => NativeWdev;
  NbdFile: new (path: string, options?: NbdFileOptions) => NativeNbdFile;
  NbdSnapshot: new (base: string, diffs: string[], options?: { threads?: number }) => NativeNbdSnapshot;
  BulkSender: new (opts: BulkSenderOptions) => BulkSender;
  BulkReceiver: new (opts: { listen: string; method: string; tls?: TlsPem }) => BulkReceiver;
  SortedWdiffWriter: new (
    path: string,
    opts?: { uuid?: Buffer; compression?: string; level?: number },
  ) => SortedWdiffWriter;
  /** One datagram of systemd's readiness protocol to NOTIFY_SOCKET (a path, or '@name' for the abstract one). */
  notifyServiceManager(socket: string, message: string): void;
}

/**
 * A sorted wdiff written record by record (hash backup, docs/servers.md §7.6). Records come in increasing,
 * non-overlapping address order; an all-zero one is stored as ALLZERO.
 */
export interface SortedWdiffWriter {
  /** Appends the record of `data` at byte `offset` (both multiples of 512); `data` may be reused at once. */
  add(offset: number, data: Buffer): Promise<void>;
  /** Ends the wdiff and makes it durable under its path. */
  close(): Promise<{ records: number; fileBytes: number }>;
  /** Drops it: nothing is left under its path. */
  abort(): void;
}

// dist/src/native/index.js -> <root>/build/Release/NAME.node
function addonPath(name: string): string {
  return path.resolve(__dirname, '..', '..', '..', 'build', 'Release', `${name}.node`);
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: NativeAddon = require(addonPath('walb_native'));

// The bulk classes live in their own addon, which links libgrpc++: loaded on first use, so that a process that
// never moves bulk bytes (walb-wdevd, walb-proxy) does not pay for loading gRPC's libraries at its start.
type BulkAddon = Pick<NativeAddon, 'BulkSender' | 'BulkReceiver'>;
let bulkAddon: BulkAddon | undefined;
function loadBulkAddon(): BulkAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  bulkAddon ??= require(addonPath('walb_bulk_native')) as BulkAddon;
  return bulkAddon;
}
for (const name of ['BulkSender', 'BulkReceiver'] as const) {
  Object.defineProperty(native, name, { enumerable: true, get: () => loadBulkAddon()[name] });
}

/** The header of a wdiff file, which is closed again before this returns. */
export function readWdiffHeader(file: string): WdiffHeader {
  const f = new native.WdiffFile(file);
  try {
    return f.header();
  } finally {
    f.close();
  }
}
