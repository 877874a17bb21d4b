// The archive's maintenance commands (docs/servers.md §6.3, §6.6, §6.7): Apply and Merge (by gids or by size),
// operations under the foreground limit with their actions, started the same way by the maintenance worker
// (maintenance-worker.ts); GcDiff, the start's garbage collection on request; DisableSnapshot and EnableSnapshot,
// which flip the explicit flag of snapshots. What each may do is decided in policy.ts.
import { WalbError, cancelled } from '../common/errors';
import { unary } from '../common/grpc';
import { diffText } from '../common/meta';
import type { Operation } from '../generated/walb/v1/Operation';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext, ArchiveVolume } from './context';
import { applyChain, checkGcDiff, mergeRun, mergeRunsOf, snapshotFlagDiffs, type MergeRun } from './policy';
import { throttle } from './volume-store';

/**
 * Starts the apply of volume `v` up to `gid` as an operation (action Apply, a foreground slot), once
 * policy.applyChain allowed it; `chainLength` is how many diffs it writes.
 */
export function startApply(
  ctx: ArchiveContext,
  v: ArchiveVolume,
  gid: number,
  chainLength: number,
): Operation {
  const volume = v.state.volume;
  const store = ctx.volumes.store(v);
  const release = ctx.foreground.take();
  const end = v.state.beginAction('Apply');
  return ctx.ops.start('apply', volume, async (op) => {
    try {
      const from = store.base!.snapB;
      await store.apply(gid, {
        progress: (done, total) => op.progress(done, total),
        bytesPerSec: ctx.config.applyBytesPerSec,
      });
      ctx.log('info', 'applied', { volume, fromGid: from.gidB, gid, diffs: chainLength });
      return String(gid);
    } finally {
      end();
      release();
    }
  });
}

/**
 * Starts the merge of `runs` of volume `v`, oldest first, as one operation (action Merge, a foreground slot), once
 * policy.mergeRun or policy.mergeRunsOf chose them. With several runs (a merge by size), `applyBytesPerSec` paces
 * them: after each merged diff the operation waits until the bytes merged so far fit the rate. Its result is the
 * merged diffs.
 */
export function startMerge(ctx: ArchiveContext, v: ArchiveVolume, runs: MergeRun[]): Operation {
  const volume = v.state.volume;
  const store = ctx.volumes.store(v);
  const release = ctx.foreground.take();
  const end = v.state.beginAction('Merge');
  const total = runs.reduce((a, r) => a + r.merged.dataSize, 0);
  return ctx.ops.start('merge', volume, async (op) => {
    try {
      const started = Date.now();
      const made: string[] = [];
      let before = 0;
      for (const run of runs) {
        if (op.signal.aborted) throw cancelled();
        const merged = await store.merge(run.diffs, run.merged, (done) => op.progress(before + done, total));
        before += run.merged.dataSize;
        made.push(diffText(merged));
        ctx.log('info', 'merged', { volume, diff: diffText(merged), inputs: run.diffs.length });
        if (runs.length > 1) await throttle(before, started, ctx.config.applyBytesPerSec);
      }
      return made.join(', ');
    } finally {
      end();
      release();
    }
  });
}

export function maintenanceHandlers(
  ctx: ArchiveContext,
): Pick<ArchiveHandlers, 'Apply' | 'Merge' | 'GcDiff' | 'DisableSnapshot' | 'EnableSnapshot'> {
  const { volumes, log } = ctx;
  const flag = (mergeable: boolean, logDone: (volume: string, gids: number[]) => void) =>
    unary(async (req: { volume: string; gids: (string | number)[] }) => {
      const v = volumes.get(req.volume);
      const gids = req.gids.map(Number);
      const diffs = snapshotFlagDiffs(
        req.volume,
        volumes.facts(v),
        v.state.runningActions(),
        gids,
        mergeable,
      );
      await volumes.store(v).setMergeable(diffs, mergeable);
      logDone(req.volume, gids);
      return {};
    });
  return {
    Apply: unary(async (req) => {
      const v = volumes.get(req.volume);
      const gid = Number(req.gid);
      const chain = applyChain(req.volume, volumes.facts(v), ctx.busy(v), gid);
      return startApply(ctx, v, gid, chain.length);
    }),
    Merge: unary(async (req) => {
      const v = volumes.get(req.volume);
      const [gidB, gidE, maxBytes] = [Number(req.gidBegin), Number(req.gidEnd), Number(req.maxBytes)];
      if (maxBytes && (gidB || gidE))
        throw new WalbError('INVALID_ARGUMENT', 'merge: either gids or a size, not both');
      const facts = volumes.facts(v);
      const actions = ctx.busy(v);
      const runs = maxBytes
        ? mergeRunsOf(req.volume, facts, actions, maxBytes)
        : [mergeRun(req.volume, facts, actions, gidB, gidE)];
      return startMerge(ctx, v, runs);
    }),
    GcDiff: unary(async (req) => {
      const v = volumes.get(req.volume);
      checkGcDiff(req.volume, volumes.facts(v), ctx.busy(v));
      const collected = await volumes.store(v).gc();
      log('info', 'gc-diff', { volume: req.volume, collected });
      return { collected };
    }),
    DisableSnapshot: flag(true, (volume, gids) => log('info', 'snapshot-disabled', { volume, gids })),
    EnableSnapshot: flag(false, (volume, gids) => log('info', 'snapshot-enabled', { volume, gids })),
  };
}
