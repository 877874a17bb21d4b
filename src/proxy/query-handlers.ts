// The proxy's read-only commands (docs/servers.md §5.3): registrations, states, the give-up flag and the status of
// a volume's queues. Nothing here changes a volume.
import { unary } from '../common/grpc';
import type { ProxyHandlers } from '../generated/walb/v1/Proxy';
import { checkRegistered } from './policy';
import type { ProxyContext } from './server';
import { requireVolume } from './volume';

type QueryHandlers = Pick<
  ProxyHandlers,
  'ArchiveInfoList' | 'GetState' | 'IsWdiffSendError' | 'ListVolumes' | 'Status'
>;

export function queryHandlers(ctx: ProxyContext): QueryHandlers {
  return {
    ArchiveInfoList: unary(async (req) => ({
      archives: requireVolume(ctx.volumes, req.volume).store.archives.map((a) => ({
        volume: req.volume,
        ...a,
      })),
    })),
    GetState: unary(async (req) => {
      const v = ctx.volumes.get(req.volume);
      return v ? v.describe() : { volume: req.volume, state: 'Clear', actions: [] };
    }),
    IsWdiffSendError: unary(async (req) => {
      const v = requireVolume(ctx.volumes, req.volume);
      checkRegistered(req.volume, req.name, v.store.archive(req.name) !== undefined, 'registered');
      return { value: v.sendError.has(req.name) };
    }),
    ListVolumes: unary(async () => ({
      volumes: [...ctx.volumes.values()].map((v) => v.describe()),
    })),
    Status: unary(async (req) => {
      const v = requireVolume(ctx.volumes, req.volume);
      const archives = [];
      for (const a of v.store.archives)
        archives.push({
          name: a.name,
          address: a.address,
          ...(await v.store.queueStatus(a.name)),
          sendError: v.sendError.has(a.name),
        });
      return {
        state: v.describe(),
        size: v.store.size,
        lastWlogReceived: Math.floor(v.lastWlogMs / 1000),
        archives,
      };
    }),
  };
}
