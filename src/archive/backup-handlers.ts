// The backups list and verification (docs/servers.md §6.9): ListBackups answers from the volume's metadata and its
// saved verifications; Verify reads a snapshot virtually as an operation under the foreground limit with the action
// Restore (it excludes what a restore excludes), and saves its outcome, failed or not, before the operation ends.
import { errorCode, errorMessage } from '../common/errors';
import { unary } from '../common/grpc';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext } from './context';
import { ACTIVE_STATES, storedBackups, checkVerify, type Verification } from './policy';

export function backupHandlers(ctx: ArchiveContext): Pick<ArchiveHandlers, 'ListBackups' | 'Verify'> {
  const { volumes, foreground, ops, log } = ctx;
  return {
    ListBackups: unary(async (req) => {
      const v = volumes.get(req.volume);
      const store = volumes.store(v);
      const rows = ACTIVE_STATES.includes(v.state.state)
        ? storedBackups(store, await store.verifications())
        : [];
      return {
        backups: rows.map((r) => ({
          gid: r.gid,
          timestamp: r.timestamp,
          explicit: r.explicit,
          diffs: r.diffs,
          diffBytes: r.diffBytes,
          verification: r.verification && {
            timeMs: r.verification.timeMs,
            ok: r.verification.ok,
            hash: r.verification.hash ?? '',
            errorCode: r.verification.errorCode ?? '',
            error: r.verification.error ?? '',
          },
        })),
      };
    }),
    Verify: unary(async (req) => {
      const v = volumes.get(req.volume);
      const gid = Number(req.gid);
      checkVerify(req.volume, volumes.facts(v), v.state.runningActions(), gid);
      const store = volumes.store(v);
      const release = foreground.take();
      const end = v.state.beginAction('Restore');
      return ops.start('verify', req.volume, async (op) => {
        try {
          const outcome: Verification = { gid, archiveUuid: store.archiveUuid, timeMs: 0, ok: false };
          let failure: unknown;
          try {
            outcome.hash = await store.hashSnapshot(gid, (done, total) => op.progress(done, total));
            outcome.ok = true;
          } catch (err) {
            failure = err;
            outcome.errorCode = errorCode(err) ?? 'INTERNAL';
            outcome.error = errorMessage(err);
          }
          outcome.timeMs = Date.now();
          await store.saveVerification(outcome);
          if (!outcome.ok) {
            log('error', 'verify-failed', {
              volume: req.volume,
              gid,
              code: outcome.errorCode,
              error: outcome.error,
            });
            throw failure;
          }
          log('info', 'verified', { volume: req.volume, gid, hash: outcome.hash });
          return outcome.hash;
        } finally {
          end();
          release();
        }
      });
    }),
  };
}
