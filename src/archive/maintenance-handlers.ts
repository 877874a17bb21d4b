// The archive's maintenance commands (docs/servers.md §6.3, §6.6, §6.7): Apply and Merge, operations under the
// foreground limit with their actions; GcDiff, the start's garbage collection on request; DisableSnapshot and
// EnableSnapshot, which flip the explicit flag of snapshots. What each may do is decided in policy.ts.
import { unary } from '../common/grpc';
import { diffText } from '../common/meta';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext } from './context';
import { applyChain, checkGcDiff, mergeRun, snapshotFlagDiffs } from './policy';

export function maintenanceHandlers(
  ctx: ArchiveContext,
): Pick<ArchiveHandlers, 'Apply' | 'Merge' | 'GcDiff' | 'DisableSnapshot' | 'EnableSnapshot'> {
  const { volumes, foreground, ops, log } = ctx;
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
      const store = volumes.store(v);
      const release = foreground.take();
      const end = v.state.beginAction('Apply');
      return ops.start('apply', req.volume, async (op) => {
        try {
          const from = store.base!.snapB;
          await store.apply(gid, {
            progress: (done, total) => op.progress(done, total),
            bytesPerSec: ctx.config.applyBytesPerSec,
          });
          log('info', 'applied', { volume: req.volume, fromGid: from.gidB, gid, diffs: chain.length });
          return String(gid);
        } finally {
          end();
          release();
        }
      });
    }),
    Merge: unary(async (req) => {
      const v = volumes.get(req.volume);
      const run = mergeRun(
        req.volume,
        volumes.facts(v),
        ctx.busy(v),
        Number(req.gidBegin),
        Number(req.gidEnd),
      );
      const store = volumes.store(v);
      const release = foreground.take();
      const end = v.state.beginAction('Merge');
      return ops.start('merge', req.volume, async (op) => {
        try {
          const merged = await store.merge(run.diffs, run.merged, (done, total) => op.progress(done, total));
          log('info', 'merged', { volume: req.volume, diff: diffText(merged), inputs: run.diffs.length });
          return diffText(merged);
        } finally {
          end();
          release();
        }
      });
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
