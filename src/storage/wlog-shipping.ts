// The wlog task of a volume (docs/servers.md §4.5, §7.1): frees the log below the done record, chooses the next
// range (policy.ts), reads its packs from the wdev's log device and sends them to the first available proxy that
// takes them, then moves the done record and frees the log again. In Standby it ships nothing and frees the log as
// it comes (WlogRemove, docs/servers.md §4.2). Runs as the task queue's worker, one per volume.
import type { Backoff } from '../common/backoff';
import { errorCode, errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import type { TransferMetrics } from '../common/metrics';
import type { TaskResult } from '../common/task-queue';
import { runTransfer } from '../common/transfer';
import type { StorageConfig } from '../config/storage';
import { native } from '../native';
import type { WdevClient, WdevStatusReply } from '../wdev/client';
import {
  chooseRange,
  doneAfterAck,
  freeLogUpTo,
  marksProxyDown,
  maxSendPb,
  needsCheckpoint,
  noProxyTook,
  rangeDiff,
  standbyFreeBound,
  type WlogRange,
} from './policy';
import type { ProxyMonitor } from './proxy-monitor';
import { hasLogTask, type StorageVolumes, type Volume } from './volumes';

/** Most bytes of log read from the device at once. */
const READ_BYTES = 4 << 20;
/** Most bytes of packs in one message (the proxy only appends them). */
const MESSAGE_BYTES = 1 << 20;

export function pbsOf(st: WdevStatusReply): number {
  return st.pbs || 512;
}

export class WlogShipper {
  constructor(
    private readonly config: StorageConfig,
    private readonly log: Logger,
    private readonly wdevd: WdevClient,
    private readonly proxies: ProxyMonitor,
    private readonly volumes: StorageVolumes,
    private readonly backoff: Backoff<string>,
    /** What the transfers to the proxies count (docs/operations.md, "Metrics"). */
    private readonly transfers: TransferMetrics<'volume'>,
  ) {}

  /** `maxWlogSendMb` in physical blocks of this wdev. */
  maxSendPb(st: WdevStatusReply): number {
    return maxSendPb(this.config.maxWlogSendMb, pbsOf(st));
  }

  async task(name: string): Promise<TaskResult> {
    const v = this.volumes.find(name);
    // Logs flow during a full or hash backup too (the archive answers the proxy "syncing" until it ends).
    if (!v || !hasLogTask(v) || v.state.stop !== 'not-stopping') return { again: false };
    const standby = v.state.state === 'Standby';
    const end = v.state.beginAction(standby ? 'WlogRemove' : 'WlogSend');
    try {
      let st = await this.wdevd.status(v.store.wdev);
      if (st.overflow) {
        this.log('error', 'overflow', { volume: name, wdev: v.store.wdev });
        if (v.state.state === 'Target') await v.state.transact('StopTarget', async () => undefined);
        return { again: false };
      }
      if (standby) {
        await this.freeLog(v, st, standbyFreeBound(st.lsids!));
        return { again: false };
      }
      st = await this.freeLog(v, st, v.store.records.done.lsid);
      const maxPb = this.maxSendPb(st);
      const records = await v.store.refreshQueue(st.lsids!.latest, maxPb, this.config.snapshotIntervalSec);
      const choice = chooseRange(records, st.lsids!.permanent, maxPb);
      if (choice.kind === 'nothing-queued') return { again: false };
      if (choice.kind === 'not-permanent') return { again: true, delayMs: choice.delayMs };
      await this.sendRange(v, st, choice.range);
      this.backoff.reset(name);
      return { again: true, delayMs: 0 };
    } finally {
      end();
    }
  }

  /** Frees the log up to `bound` (after a checkpoint when it is past prev_written). */
  private async freeLog(v: Volume, st: WdevStatusReply, bound: number): Promise<WdevStatusReply> {
    if (needsCheckpoint(bound, st.lsids!)) st = await this.wdevd.takeCheckpoint(v.store.wdev);
    const to = freeLogUpTo(bound, st.lsids!);
    return to === undefined ? st : this.wdevd.setOldestLsid(v.store.wdev, to);
  }

  private async sendRange(v: Volume, st: WdevStatusReply, range: WlogRange): Promise<void> {
    const { begin, endLsid, whole } = range;
    const header = {
      header: {
        volume: v.name,
        storageUuid: v.store.uuid,
        pbs: pbsOf(st),
        salt: 0,
        size: st.deviceSize,
        beginLsid: begin.lsid,
        maxLogPb: endLsid - begin.lsid,
      },
    };
    // A whole range ends at a snapshot, a pack boundary; a capped one stops before the pack that would pass
    // the cap (never splitting a pack). The salt for the wlog header comes with the first chunk.
    const mode = whole ? 'exact' : 'up-to';
    const first = await native.ldevReadLogs(st.ldev, {
      beginLsid: begin.lsid,
      endLsid,
      maxBytes: READ_BYTES,
      end: whole ? 'exact' : 'up-to-at-least-one',
    });
    header.header.salt = first.super.salt;
    const ldev = st.ldev;
    let reached = first.nextLsid;
    const body = async function* () {
      let chunk = first;
      for (;;) {
        for (let off = 0; off < chunk.data.length; off += MESSAGE_BYTES)
          yield { packs: chunk.data.subarray(off, off + MESSAGE_BYTES) };
        if (chunk.nextLsid >= endLsid) return;
        const next = await native.ldevReadLogs(ldev, {
          beginLsid: chunk.nextLsid,
          endLsid,
          maxBytes: READ_BYTES,
          end: mode,
        });
        if (next.packs === 0) return;
        chunk = next;
        reached = chunk.nextLsid;
      }
    };
    const endMsg = async () => ({ end: { endLsid: reached, diff: rangeDiff(range) } });
    const errors: string[] = [];
    // The available proxies in priority order: the first that accepts wins.
    for (const i of this.proxies.available()) {
      const address = this.proxies.address(i);
      const startedMs = Date.now();
      try {
        const r = await runTransfer(this.proxies.client(i).SendWlog(), header, body, endMsg, {
          idleTimeoutMs: this.config.socketTimeoutSec * 1000,
        });
        if (!r.ok) {
          errors.push(`${address}: ${r.reason} ${r.message}`);
          this.transfers.failed({ volume: v.name }, String(r.reason));
          continue;
        }
      } catch (err) {
        errors.push(`${address}: ${errorMessage(err)}`);
        this.transfers.failed({ volume: v.name }, errorCode(err) ?? 'INTERNAL');
        if (marksProxyDown(errorCode(err))) this.proxies.markDown(i, errorMessage(err));
        continue;
      }
      // Acknowledged: the done record moves, consumed records go, the log below it is freed.
      this.transfers.done({ volume: v.name }, (reached - begin.lsid) * pbsOf(st), startedMs);
      const done = doneAfterAck(range, reached);
      await v.store.acknowledge(done);
      this.log('info', 'wlog-sent', {
        volume: v.name,
        proxy: address,
        lsids: [begin.lsid, reached],
        gids: [begin.gid, range.snapE],
      });
      await this.freeLog(v, await this.wdevd.status(v.store.wdev), done.lsid);
      return;
    }
    throw noProxyTook(v.name, errors);
  }
}
