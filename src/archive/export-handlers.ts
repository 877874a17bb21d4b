// Snapshot export (docs/servers.md §6.10): Export serves a restorable snapshot read-only over NBD until Unexport;
// ListExports lists them. What may be exported is decided in policy.ts; the exports themselves are in exports.ts.
import { unary } from '../common/grpc';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext } from './context';
import { exportChain } from './policy';

export function exportHandlers(
  ctx: ArchiveContext,
): Pick<ArchiveHandlers, 'Export' | 'Unexport' | 'ListExports'> {
  const { volumes, exports } = ctx;
  return {
    Export: unary(async (req) => {
      const v = volumes.get(req.volume);
      const gid = Number(req.gid);
      const chain = exportChain(
        req.volume,
        volumes.facts(v),
        v.state.runningActions(),
        gid,
        exports.gids(req.volume),
      );
      const store = volumes.store(v);
      return exports.add(
        req.volume,
        gid,
        store.baseImage,
        chain.map((d) => store.diffPath(d)),
      );
    }),
    Unexport: unary(async (req) => {
      volumes.get(req.volume);
      await exports.remove(req.volume, Number(req.gid));
      return {};
    }),
    ListExports: unary(async (req) => {
      if (req.volume) volumes.get(req.volume);
      return { exports: exports.list(req.volume || undefined) };
    }),
  };
}
