// The storage's backup commands (docs/servers.md §4.3): FullBackup and HashBackup (operations, full-backup.ts and
// hash-backup.ts), Snapshot (an explicit record the wlog task ships at once) and Kick (heartbeats due, every wlog
// task now).
import { WalbError } from '../common/errors';
import { unary } from '../common/grpc';
import type { StorageHandlers } from '../generated/walb/v1/Storage';
import { checkHashChunk } from './policy';
import type { StorageContext } from './server';

/** Default bytes per bulk of a full backup's scan. */
const BULK = 1 << 20;
/**
 * Default bytes per hashed chunk of a hash backup (docs/formats.md §7): small enough that scattered writes cost
 * little more than themselves on the wire, large enough that hashing is not slowed by it (bench:hash).
 */
const HASH_CHUNK = 64 << 10;

export function backupHandlers(
  ctx: StorageContext,
): Pick<StorageHandlers, 'FullBackup' | 'HashBackup' | 'Snapshot' | 'Kick'> {
  const { volumes } = ctx;
  return {
    FullBackup: unary(async (req) => {
      const v = volumes.get(req.volume);
      v.state.require(['SyncReady'], 'full-bkp');
      const release = ctx.foreground.take();
      return ctx.ops.start('full-backup', v.name, async (op) => {
        try {
          return await ctx.fullBackup.run(v, req.bulk || BULK, op);
        } finally {
          release();
        }
      });
    }),
    HashBackup: unary(async (req) => {
      const v = volumes.get(req.volume);
      const chunk = req.chunkSize || HASH_CHUNK;
      checkHashChunk(chunk);
      v.state.require(['SyncReady'], 'hash-bkp');
      const release = ctx.foreground.take();
      return ctx.ops.start('hash-backup', v.name, async (op) => {
        try {
          return await ctx.hashBackup.run(v, chunk, op);
        } finally {
          release();
        }
      });
    }),
    Snapshot: unary(async (req) => {
      const v = volumes.get(req.volume);
      v.state.require(['Target', 'Stopped'], 'snapshot');
      const st = await ctx.wdevd.status(v.store.wdev);
      if (st.overflow) throw new WalbError('FAILED_PRECONDITION', `wdev ${v.store.wdev} overflowed`);
      const rec = await v.store.addSnapshot(st.lsids!.latest, false, ctx.maxSendPb(st));
      ctx.wlogTasks.pushForce(v.name, 0);
      ctx.log('info', 'snapshot', { volume: v.name, gid: rec.gid, lsid: rec.lsid });
      return { gid: rec.gid, timestamp: rec.timestamp, explicit: true };
    }),
    Kick: unary(async () => {
      await ctx.proxies.kick();
      ctx.retryAllNow();
      return {};
    }),
  };
}
