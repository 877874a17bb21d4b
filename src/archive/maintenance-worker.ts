// The maintenance worker built into walb-archive (docs/servers.md §6.8): every `maintenance.intervalSec` it looks at
// each volume in turn and starts at most one task for it — an apply of the snapshots older than the keep period, or
// a merge by size of the runs of small diffs — as an operation exactly like walbc's apply and merge
// (maintenance-handlers.ts), at most `maintenance.maxTasks` at once. Before deciding, it asks each configured
// secondary archive for the volume's latest gid, which no task passes. policy.ts decides (secondaryFloor,
// maintenanceDecision); this module asks, starts and remembers what it did for `Status`.
//
// One round runs at a time, on the JS thread; the next is scheduled when it ends, so rounds never overlap. The
// decision and the start of the task happen without an await between them, so no command slips in. The worker
// keeps nothing on disk: a kill -9 leaves the apply or merge it started to their own crash safety
// (docs/servers.md §6.6), and the next start decides afresh.
import { errorCode, errorMessage } from '../common/errors';
import { channelCredentials, connect, loadProto, type Promised } from '../common/grpc';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { ArchiveContext, ArchiveVolume } from './context';
import { startApply, startMerge } from './maintenance-handlers';
import { maintenanceDecision, secondaryFloor, type SecondaryFacts } from './policy';

export class MaintenanceWorker {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private stopped = false;
  private secondaries: { address: string; client: Promised<ArchiveClient> }[] = [];
  /** The operation the worker runs on each volume. */
  private readonly running = new Map<string, string>();
  /** What the worker does for each volume now, or why it does nothing (Status.maintenance). */
  private readonly said = new Map<string, string>();
  /** How the worker's last task on each volume ended. */
  private readonly lastTask = new Map<string, string>();

  constructor(private readonly ctx: ArchiveContext) {}

  private get config() {
    return this.ctx.config.maintenance;
  }

  start(): void {
    if (!this.config.enabled) return;
    const Archive = loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive;
    const credentials = channelCredentials(this.ctx.config.tls);
    this.secondaries = this.config.secondaries.map((address) => ({
      address,
      client: connect(Archive, address, credentials, this.ctx.config.socketTimeoutSec * 1000),
    }));
    this.ctx.log('info', 'maintenance-started', {
      intervalSec: this.config.intervalSec,
      secondaries: this.config.secondaries,
    });
    this.schedule();
  }

  /** No round or task starts after it resolves; the tasks running go on (each is crash-safe). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.round;
    for (const s of this.secondaries) s.client.close();
    this.secondaries = [];
  }

  /** What the worker does for the volume, or why it waits, and how its last task ended; empty when it is off. */
  status(volume: string): string {
    if (!this.config.enabled) return '';
    const last = this.lastTask.get(volume);
    return `${this.said.get(volume) ?? 'waiting for the next round'}${last ? `; last task: ${last}` : ''}`;
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.round = this.runRound().finally(() => {
        this.round = undefined;
        if (!this.stopped) this.schedule();
      });
    }, this.config.intervalSec * 1000);
  }

  private async runRound(): Promise<void> {
    for (const v of this.ctx.volumes.all()) {
      if (this.stopped) return;
      const volume = v.state.volume;
      if (!v.store || this.running.has(volume)) continue;
      if (this.running.size >= this.config.maxTasks) {
        this.said.set(volume, `waiting: ${this.running.size} task(s) running (maxTasks)`);
        continue;
      }
      try {
        await this.maintain(v);
      } catch (err) {
        this.said.set(volume, `not started: ${errorMessage(err)}`);
        this.ctx.log('warn', 'maintenance-not-started', { volume, error: errorMessage(err) });
      }
    }
  }

  private async maintain(v: ArchiveVolume): Promise<void> {
    const volume = v.state.volume;
    const floor = secondaryFloor(v.store!.archiveUuid, await this.askSecondaries(volume));
    if (this.stopped) return;
    if ('wait' in floor) {
      this.said.set(volume, `waiting: ${floor.wait}`);
      return;
    }
    const d = maintenanceDecision(
      this.ctx.volumes.facts(v),
      this.ctx.busy(v),
      this.config,
      Date.now() / 1000,
      floor.floor,
    );
    if (d.kind === 'idle') {
      this.said.set(volume, `idle: ${d.why}`);
      return;
    }
    const op =
      d.kind === 'apply' ? startApply(this.ctx, v, d.gid, d.chain.length) : startMerge(this.ctx, v, d.runs);
    const what =
      d.kind === 'apply'
        ? `apply up to gid ${d.gid}`
        : `merge of ${d.runs.length} run(s) of ${d.runs.reduce((a, r) => a + r.diffs.length, 0)} diffs`;
    const id = op.id!;
    this.running.set(volume, id);
    this.said.set(volume, `${what}: operation ${id} running`);
    this.ctx.log('info', 'maintenance-task', { volume, kind: d.kind, operation: id });
    void this.ctx.ops.wait(id).then((o) => {
      this.running.delete(volume);
      this.said.delete(volume);
      const error = o.state === 'failed' ? ` (${o.errorCode}: ${o.error})` : '';
      const at = new Date(Number(o.endedMs)).toISOString();
      this.lastTask.set(volume, `${what}: operation ${id} ${o.state}${error} at ${at}`);
    });
  }

  /** Each secondary's facts of the volume; one that has no such volume holds nothing. */
  private askSecondaries(volume: string): Promise<SecondaryFacts[]> {
    return Promise.all(
      this.secondaries.map(async ({ address, client }): Promise<SecondaryFacts> => {
        try {
          const s = await client.Status({ volume });
          return {
            address,
            state: s.state?.state ?? '',
            archiveUuid: s.archiveUuid,
            latestGid: s.latest ? Number(s.latest.gidB) : undefined,
          };
        } catch (err) {
          if (errorCode(err) === 'NOT_FOUND')
            return { address, state: 'Clear', archiveUuid: '', latestGid: undefined };
          return { address, error: errorMessage(err) };
        }
      }),
    );
  }
}
