// Restore of a snapshot into an image file, and its deletion (docs/servers.md §6.5): Restore runs as an operation
// under the foreground limit with the action Restore, not while the base image grows; DelRestored waits for no
// restore.
import { unary } from '../common/grpc';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext } from './context';
import { checkDelRestored, checkNotResizing, checkRestore } from './policy';

export function restoreHandlers(ctx: ArchiveContext): Pick<ArchiveHandlers, 'Restore' | 'DelRestored'> {
  const { volumes, foreground, ops, log } = ctx;
  return {
    Restore: unary(async (req) => {
      const v = volumes.get(req.volume);
      checkRestore(req.volume, volumes.facts(v), req.gid, v.store?.listRestored() ?? []);
      checkNotResizing(req.volume, v.state.runningActions());
      const store = volumes.store(v);
      const release = foreground.take();
      const end = v.state.beginAction('Restore');
      return ops.start('restore', req.volume, async (op) => {
        try {
          const out = await store.restore(req.gid, (done, total) => op.progress(done, total));
          log('info', 'restored', { volume: req.volume, gid: req.gid, path: out });
          return out;
        } finally {
          end();
          release();
        }
      });
    }),
    DelRestored: unary(async (req) => {
      const v = volumes.get(req.volume);
      checkDelRestored(req.volume, v.state.runningActions());
      await volumes.store(v).delRestored(req.gid);
      return {};
    }),
  };
}
