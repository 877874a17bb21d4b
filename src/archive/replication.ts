// Replication of a volume to another archive, on the source (docs/servers.md §7.7): the operation `Replicate`
// under the action ReplSyncAsClient drives a loop of steps, each one transfer on the destination with its own
// accept, commit and rollback — full (the base image from where an interrupted one stopped, through the
// destination's bulk port or on the stream), resync or hash (resync.ts: chunks that differ by hashes) or diff (the
// source's chain from the destination's latest snapshot, merged or one file verbatim) — until the destination's
// latest gid reaches the target. policy.ts chooses each step; this module connects, sends and reacts.
import fs from 'node:fs';
import { WalbError, cancelled } from '../common/errors';
import {
  channelCredentials,
  connect,
  loadProto,
  tlsPem,
  unary,
  withPort,
  type Promised,
} from '../common/grpc';
import { PhaseTimes } from '../common/log';
import { diffText, type MetaDiff, type MetaState } from '../common/meta';
import type { OperationHandle } from '../common/operations';
import {
  FULL_SYNC_BULK,
  fileBulks,
  fileChunks,
  runTransfer,
  sendBulks,
  type TransferResult,
} from '../common/transfer';
import type { Accepted__Output } from '../generated/walb/v1/Accepted';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ArchiveClient, ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { FullSyncRequest } from '../generated/walb/v1/FullSyncRequest';
import type { ReplicateRequest__Output } from '../generated/walb/v1/ReplicateRequest';
import { native } from '../native';
import { parseCompression } from '../proxy/policy';
import { wireDiff } from '../proxy/wdiff-sender';
import type { ArchiveContext } from './context';
import {
  checkReplicate,
  defaultReplicationTarget,
  nextReplicationStep,
  reactToReplicaRejection,
  type ReplicaFacts,
  type ReplicationOptions,
} from './policy';
import { hashReplicaStep, resyncStep, type ResyncOptions } from './resync';
import type { ArchiveVolumeStore } from './volume-store';

/** Bytes of wdiffs a diff step merges at most, unless asked otherwise. */
const DEFAULT_MAX_MERGE_BYTES = 1 << 30;
/** Bytes per bulk of a full replication. */
const BULK = 1 << 20;
/** FullSyncRequest.data's field number (proto/walb/v1/archive.proto): the bulks are built pre-encoded. */
const FULL_SYNC_DATA_FIELD = 2;
/** Reads in flight, so that the disk and the network overlap. */
const READ_AHEAD = 4;
/** A destination busy with another transfer of the volume is asked again this often, this long. */
const BUSY_RETRY_MS = 500;
const BUSY_GIVE_UP_MS = 30_000;

export function replicationHandlers(ctx: ArchiveContext): Pick<ArchiveHandlers, 'Replicate'> {
  return {
    Replicate: unary(async (req) => {
      const v = ctx.volumes.get(req.volume);
      checkReplicate(req.volume, ctx.volumes.facts(v), v.state.runningActions());
      if (!req.destination) throw new WalbError('INVALID_ARGUMENT', 'replicate: a destination is required');
      const compression = parseCompression(req.compression);
      const store = ctx.volumes.store(v);
      const release = ctx.foreground.take();
      const end = v.state.beginAction('ReplSyncAsClient');
      return ctx.ops.start('replicate', req.volume, async (op) => {
        const Archive = loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive;
        const destination = connect(Archive, req.destination, channelCredentials(ctx.config.tls));
        try {
          return await new Replication(ctx, store, destination, req, compression, op).run();
        } finally {
          destination.close();
          end();
          release();
        }
      });
    }),
  };
}

class Replication {
  /** Bytes sent by the steps before the current one. */
  private doneBytes = 0;
  private readonly idleTimeoutMs: number;

  constructor(
    private readonly ctx: ArchiveContext,
    private readonly store: ArchiveVolumeStore,
    private readonly destination: Promised<ArchiveClient>,
    private readonly req: ReplicateRequest__Output,
    private readonly compression: ReturnType<typeof parseCompression>,
    private readonly op: OperationHandle,
  ) {
    this.idleTimeoutMs = ctx.config.socketTimeoutSec * 1000;
  }

  /** The loop; the result is the destination's latest gid. */
  async run(): Promise<string> {
    const volume = this.req.volume;
    const opts: ReplicationOptions = {
      targetGid: Number(this.req.gid) || defaultReplicationTarget(this.store),
      resync: this.req.resync,
      dontMerge: this.req.dontMerge,
      maxMergeBytes: Number(this.req.maxMergeBytes) || DEFAULT_MAX_MERGE_BYTES,
    };
    let busySince = 0;
    const started = performance.now();
    // What the destination said, or what its acknowledgement of the last diff step implies; undefined: ask it.
    let facts: ReplicaFacts | undefined;
    for (let steps = 0; ; steps++) {
      if (this.op.signal.aborted) throw cancelled();
      const choice = new PhaseTimes();
      facts ??= await this.destinationFacts();
      const step = nextReplicationStep(volume, this.store, facts, opts);
      choice.lap('choice');
      this.ctx.log('info', 'repl-step', {
        volume,
        kind: step.kind,
        destination: this.req.destination,
        ms: choice.ms,
      });
      if (step.kind === 'done') {
        this.ctx.log('info', 'repl-done', {
          volume,
          gid: step.gid,
          steps,
          ms: Math.round(performance.now() - started),
        });
        return String(step.gid);
      }
      const result =
        step.kind === 'full'
          ? await this.full()
          : step.kind === 'diff'
            ? await this.diff(step.diffs, step.merged)
            : step.kind === 'hash'
              ? await this.hash(step.diff)
              : await this.resync();
      // A resync asked for is done once the destination took the source's history (full or resync).
      if ((step.kind === 'full' || step.kind === 'resync') && result.ok) opts.resync = false;
      // An acknowledged diff is durable there and is its latest snapshot now (a proxy's wdiff arriving meanwhile
      // makes the next diff step TOO_OLD_DIFF, which asks again): no Status round trip before the next choice.
      facts = step.kind === 'diff' && result.ok ? { ...facts, latest: step.merged.snapE } : undefined;
      if (result.ok) {
        busySince = 0;
        continue;
      }
      const reaction = reactToReplicaRejection(result.reason);
      this.ctx.log('info', 'repl-rejected', { volume, kind: step.kind, reason: result.reason, reaction });
      if (reaction === 'fail')
        throw new WalbError(
          result.reason === 'NOT_FOUND' ? 'NOT_FOUND' : 'FAILED_PRECONDITION',
          `the destination refused the ${step.kind} step of ${volume} (${result.reason}): ${result.message}`,
        );
      if (reaction === 'wait') {
        busySince ||= Date.now();
        if (Date.now() - busySince > BUSY_GIVE_UP_MS)
          throw new WalbError('UNAVAILABLE', `the destination stayed busy with ${volume}: ${result.message}`);
        await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
      }
    }
  }

  /** The destination's Status; a volume it does not have is Clear. */
  private async destinationFacts(): Promise<ReplicaFacts> {
    const { state } = await this.destination.GetState({ volume: this.req.volume });
    if (state === 'Clear') return { state, archiveUuid: '', latest: undefined, sizeLb: 0 };
    const s = await this.destination.Status({ volume: this.req.volume });
    return {
      state: s.state?.state ?? state,
      archiveUuid: s.archiveUuid,
      latest: s.latest ? { gidB: Number(s.latest.gidB), gidE: Number(s.latest.gidE) } : undefined,
      sizeLb: Number(s.size),
    };
  }

  /**
   * The base image from the offset the destination names: through its bulk port when it names one (the addon reads
   * and sends from its own threads), else — or when that port cannot be reached — as bulks on the FullSync stream.
   */
  private async full(): Promise<TransferResult> {
    const store = this.store;
    const base = store.base!;
    const size = store.sizeLb * 512;
    const replica = { archiveUuid: store.archiveUuid, storageUuid: store.storageUuid, base: wireState(base) };
    const fh = await fs.promises.open(store.baseImage, 'r');
    let bulkBytes = 0;
    try {
      return await runTransfer(
        this.destination.FullSync(),
        {
          header: {
            volume: this.req.volume,
            size: store.sizeLb,
            storageUuid: store.storageUuid,
            timestamp: base.timestamp,
            replica,
          },
        },
        (accepted) => this.bulks(fh, size, accepted, (n) => (bulkBytes = n)),
        async () => ({ end: { snapshot: base.snapB, bulkBytes } }),
        { idleTimeoutMs: this.idleTimeoutMs },
      );
    } finally {
      this.doneBytes += size;
      await fh.close();
    }
  }

  private async *bulks(
    fh: fs.promises.FileHandle,
    size: number,
    accepted: Accepted__Output,
    viaBulk: (bytes: number) => void,
  ): AsyncIterable<FullSyncRequest> {
    const from = Number(accepted.resumeOffset);
    if (from % 512 !== 0 || from > size)
      throw new WalbError('INVALID_ARGUMENT', `the destination resumes at ${from} of ${size} bytes`);
    const rate = this.ctx.config.replicateBytesPerSec;
    const progress = (scanned: number) => this.op.progress(this.doneBytes + scanned, this.doneBytes + size);
    if (accepted.bulkPort) {
      const target = withPort(this.req.destination, accepted.bulkPort);
      const r = await sendBulks(
        {
          target,
          method: FULL_SYNC_BULK,
          token: accepted.bulkToken,
          path: this.store.baseImage,
          size,
          from,
          bulk: BULK,
          bytesPerSec: rate,
          timeoutSec: this.ctx.config.socketTimeoutSec,
          tls: tlsPem(this.ctx.config.tls),
        },
        { progress, signal: this.op.signal },
      );
      if ('sent' in r) return viaBulk(r.sent);
      this.ctx.log('warn', 'bulk-port-unreachable', {
        volume: this.req.volume,
        target,
        error: r.unreachable,
        hint: "open the destination archive's bulkListen port to the source, or set it to off",
      });
    }
    let scanned = from;
    for await (const b of fileBulks(fh, size, BULK, FULL_SYNC_DATA_FIELD, READ_AHEAD, rate, from)) {
      if (this.op.signal.aborted) throw cancelled();
      scanned += b.length;
      progress(scanned);
      // Zero bulks stay holes on the destination.
      if (b.message) yield b.message as unknown as FullSyncRequest;
    }
  }

  /** The destination's base image fixed by hashes and the source's lineage adopted (resync.ts). */
  private async resync(): Promise<TransferResult> {
    const result = await resyncStep(this.ctx, this.store, this.destination, this.comparing());
    this.doneBytes += this.store.sizeLb * 512;
    return result;
  }

  /** The compared diff `d` made on the destination from the chunks that differ (resync.ts). */
  private async hash(d: MetaDiff): Promise<TransferResult> {
    const result = await hashReplicaStep(this.ctx, this.store, this.destination, d, this.comparing());
    this.doneBytes += this.store.sizeLb * 512;
    return result;
  }

  /** A comparing step's progress (the bytes compared), cancel, read rate and patience. */
  private comparing(): ResyncOptions {
    const size = this.store.sizeLb * 512;
    return {
      progress: (done) => this.op.progress(this.doneBytes + done, this.doneBytes + size),
      signal: this.op.signal,
      bytesPerSec: this.ctx.config.replicateBytesPerSec,
      idleTimeoutMs: this.idleTimeoutMs,
    };
  }

  /** One diff: a single file verbatim, or several merged (recompressed) into a temporary file first. */
  private async diff(diffs: MetaDiff[], merged: MetaDiff): Promise<TransferResult> {
    const store = this.store;
    const phases = new PhaseTimes();
    const files = await withRecords(diffs.map((d) => store.diffPath(d)));
    const temp = files.length > 1 ? `${store.tempPath('repl')}.wdiff` : '';
    try {
      if (temp) await native.wdiffMerge(files, temp, this.compression);
      const file = temp || files[0];
      const size = (await fs.promises.stat(file)).size;
      phases.lap('merge');
      let sent = 0;
      const result = await runTransfer(
        this.destination.SendWdiff(),
        {
          header: {
            volume: this.req.volume,
            storageUuid: store.storageUuid,
            size: store.sizeLb,
            diff: wireDiff(merged),
            replica: { archiveUuid: store.archiveUuid, storageUuid: store.storageUuid },
          },
        },
        () => {
          phases.lap('accept');
          return fileChunks(file, (data) => {
            if (this.op.signal.aborted) throw cancelled();
            sent += data.length;
            this.op.progress(this.doneBytes + sent, this.doneBytes + size);
            return { data };
          });
        },
        async () => {
          phases.lap('send');
          return { end: {} };
        },
        { idleTimeoutMs: this.idleTimeoutMs },
      );
      // From the end message to the destination's done: its fsync, verify and rename (repl-diff-received).
      phases.lap('ack');
      this.doneBytes += size;
      if (result.ok)
        this.ctx.log('info', 'repl-diff-sent', {
          volume: this.req.volume,
          diff: diffText(merged),
          files: diffs.length,
          merged: temp !== '',
          bytes: size,
          ms: phases.ms,
        });
      return result;
    } finally {
      if (temp) await fs.promises.rm(temp, { force: true });
    }
  }
}

/** Below this size a wdiff may be empty: it is read to know (cheap), a larger one is taken as it is. */
const SMALL_WDIFF_BYTES = 64 << 10;

/**
 * The files of a run less those with no record (an implicit snapshot taken where an explicit one follows gives an
 * empty wdiff): they change nothing in a merge, and a run left with one file is sent verbatim instead of merged.
 * At least one file stays.
 */
export async function withRecords(files: string[]): Promise<string[]> {
  if (files.length < 2) return files;
  const kept: string[] = [];
  for (const f of files) {
    const small = (await fs.promises.stat(f)).size < SMALL_WDIFF_BYTES;
    if (!small || (await native.wdiffVerify(f)).records > 0) kept.push(f);
  }
  return kept.length ? kept : files.slice(0, 1);
}

function wireState(s: MetaState) {
  return { snapB: s.snapB, snapE: s.snapE, timestamp: s.timestamp };
}
