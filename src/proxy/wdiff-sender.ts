// wdiff forwarding to the archives (docs/servers.md §7.2, §7.5, §3.3 and §3.7): one send task per volume and
// archive on the proxy's task queue, each taking what the policy chooses from the archive's queue, merging it into
// one wdiff when it is several files, sending it with runTransfer and acting on the archive's answer as the policy
// says, with a back-off per task. Owns the queue, the back-off and the clients of the archives.
import fs from 'node:fs';
import { Backoff } from '../common/backoff';
import { errorCode, errorMessage } from '../common/errors';
import { channelCredentials, connect, loadProto, type Promised } from '../common/grpc';
import type { Logger } from '../common/log';
import type { TransferMetrics } from '../common/metrics';
import { snapText, type MetaDiff } from '../common/meta';
import { TaskQueue, type TaskResult } from '../common/task-queue';
import { fileChunks, runTransfer } from '../common/transfer';
import type { ProxyConfig } from '../config/proxy';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import { native, readWdiffHeader } from '../native';
import {
  SEND_FAILURE_RETRY_MS,
  chooseWdiffsToSend,
  forwards,
  parseCompression,
  reactToSend,
  type SendChoice,
} from './policy';
import type { ProxyVolume } from './volume';

export class WdiffSender {
  /** Keyed `volume/archive`. */
  private readonly queue: TaskQueue<string>;
  private readonly backoff: Backoff<string>;
  private readonly clients = new Map<string, Promised<ArchiveClient>>();
  private readonly Archive = loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive;

  constructor(
    private readonly config: ProxyConfig,
    private readonly log: Logger,
    private readonly volumes: ReadonlyMap<string, ProxyVolume>,
    /** What the transfers to the archives count (docs/operations.md, "Metrics"). */
    private readonly transfers: TransferMetrics<'volume' | 'archive'>,
  ) {
    this.backoff = new Backoff(config.retryDelaySec * 1000, config.maxRetryDelaySec * 1000);
    this.queue = new TaskQueue<string>(
      Math.max(1, config.backgroundTasks),
      (key) => this.send(key),
      (key, err) => {
        this.log('warn', 'send-failed', { task: key, error: errorMessage(err) });
        return SEND_FAILURE_RETRY_MS;
      },
    );
  }

  /** Every archive's task now, replacing any later due time (a start; the volume must forward when they run). */
  sendAllNow(v: ProxyVolume): void {
    for (const a of v.store.archives) this.queue.pushForce(task(v, a.name), 0);
  }

  /** Every archive's task unless it is queued already (`stop empty` draining the queues). */
  sendAll(v: ProxyVolume): void {
    for (const a of v.store.archives) this.queue.push(task(v, a.name));
  }

  /** A new wlog: every archive's give-up flag goes and its task is queued after its delay, unless due sooner. */
  sendAfterWlog(v: ProxyVolume): void {
    for (const a of v.store.archives) {
      v.sendError.delete(a.name);
      this.queue.push(task(v, a.name), a.delaySec * 1000);
    }
  }

  /** The operator's kick: the give-up flag and the back-off go, the task runs now. */
  kick(v: ProxyVolume, archive: string): void {
    v.sendError.delete(archive);
    this.backoff.reset(task(v, archive));
    this.queue.pushForce(task(v, archive), 0);
  }

  /** Drops the volume's queued tasks (a stop); a running one finishes. */
  drop(v: ProxyVolume): void {
    for (const a of v.store.archives) this.queue.remove(task(v, a.name));
  }

  /** Stops the queue (waiting for the running sends) and closes the clients. */
  async stop(): Promise<void> {
    await this.queue.stop();
    for (const c of this.clients.values()) c.close();
  }

  private async send(key: string): Promise<TaskResult> {
    const [volume, archive] = key.split('/');
    const v = this.volumes.get(volume);
    const info = v?.store.archive(archive);
    if (!v || !info || !forwards(v.state.state) || v.sendError.has(archive)) return { again: false };
    const queued = v.store.queued(archive);
    const fileOf = new Map(queued.map((q) => [q.diff, q.file]));
    const choice = chooseWdiffsToSend(
      queued.map((q) => q.diff),
      { maxFiles: this.config.maxWdiffSendFiles, maxBytes: this.config.maxWdiffSendMb * 2 ** 20 },
      (d) => readWdiffHeader(fileOf.get(d)!).uuid,
    );
    if (!choice) {
      this.backoff.reset(key);
      return { again: false };
    }
    const files = choice.diffs.map((d) => fileOf.get(d)!);
    const end = v.state.beginAction(archive);
    let mergedFile = '';
    try {
      let file = files[0];
      if (files.length > 1) {
        mergedFile = v.store.mergePath(archive);
        await native.wdiffMerge(files, mergedFile, parseCompression(info.compression));
        file = mergedFile;
      }
      const bytes = (await fs.promises.stat(file)).size;
      const startedMs = Date.now();
      const result = await this.transfer(v, info.address, choice, file).catch((err: unknown) => {
        this.transfers.failed({ volume, archive }, errorCode(err) ?? 'INTERNAL');
        throw err;
      });
      if (result.ok) this.transfers.done({ volume, archive }, bytes, startedMs);
      else {
        this.transfers.failed({ volume, archive }, String(result.reason));
        this.log('info', 'wdiff-rejected', {
          volume,
          archive,
          reason: result.reason,
          message: result.message,
        });
      }
      const reaction = reactToSend(result, Date.now() - v.lastWlogMs, this.config.retryTimeoutSec * 1000);
      if (reaction.dropSent) await v.store.dropQueued(archive, files);
      if (result.ok) {
        this.backoff.reset(key);
        this.log('info', 'wdiff-sent', {
          volume,
          archive,
          diff: `${snapText(choice.merged.snapB)}-->${snapText(choice.merged.snapE)}`,
          files: files.length,
        });
      }
      if (reaction.next === 'give-up') {
        v.sendError.add(archive);
        return { again: false };
      }
      return { again: true, delayMs: reaction.next === 'back-off' ? this.backoff.next(key) : 0 };
    } finally {
      end();
      if (mergedFile) await v.store.discard(mergedFile);
    }
  }

  private transfer(v: ProxyVolume, address: string, choice: SendChoice, file: string) {
    return runTransfer(
      this.client(address).SendWdiff(),
      {
        header: {
          volume: v.name,
          storageUuid: choice.uuid,
          size: v.store.size,
          diff: wireDiff(choice.merged),
        },
      },
      () => fileChunks(file, (data) => ({ data })),
      { end: {} },
      { idleTimeoutMs: this.config.socketTimeoutSec * 1000 },
    );
  }

  private client(address: string): Promised<ArchiveClient> {
    let c = this.clients.get(address);
    if (!c) {
      c = connect(this.Archive, address, channelCredentials(this.config.tls));
      this.clients.set(address, c);
    }
    return c;
  }
}

function task(v: ProxyVolume, archive: string): string {
  return `${v.name}/${archive}`;
}

/** A diff as a transfer header carries it (MetaDiff of common.proto). */
export function wireDiff(d: MetaDiff) {
  return {
    snapB: d.snapB,
    snapE: d.snapE,
    mergeable: d.isMergeable,
    compDiff: d.isCompDiff,
    timestamp: d.timestamp,
    dataSize: d.dataSize,
  };
}
