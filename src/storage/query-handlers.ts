// The storage's reads (docs/servers.md §4.3): GetState, ListVolumes, IsOverflow, Status, ListProxies.
import { unary } from '../common/grpc';
import type { StorageHandlers } from '../generated/walb/v1/Storage';
import type { StorageContext } from './server';
import { stateReply } from './volumes';

export function queryHandlers(
  ctx: StorageContext,
): Pick<StorageHandlers, 'GetState' | 'ListVolumes' | 'IsOverflow' | 'Status' | 'ListProxies'> {
  const { volumes, wdevd } = ctx;
  return {
    GetState: unary(async (req) => {
      const v = volumes.find(req.volume);
      return v ? stateReply(v) : { volume: req.volume, state: 'Clear', actions: [] };
    }),
    ListVolumes: unary(async () => ({ volumes: volumes.all().map(stateReply) })),
    IsOverflow: unary(async (req) => ({
      overflow: (await wdevd.status(volumes.get(req.volume).store.wdev)).overflow,
    })),
    Status: unary(async (req) => {
      const v = volumes.get(req.volume);
      const st = await wdevd.status(v.store.wdev);
      const { done, queue } = v.store.records;
      return {
        state: stateReply(v),
        wdev: v.store.wdev,
        uuid: v.store.uuid,
        doneLsid: Math.max(0, done.lsid),
        doneGid: Math.max(0, done.gid),
        queue: queue.map((q) => ({ gid: q.gid, timestamp: q.timestamp, explicit: !q.isMergeable })),
        logUsage: st.logUsage,
        logCapacity: st.logCapacity,
        overflow: st.overflow,
        size: st.deviceSize,
      };
    }),
    ListProxies: unary(async () => ({
      proxies: ctx.proxies.list().map((p) => ({ ...p, lastCheck: Math.floor(p.lastCheck / 1000) })),
      archive: ctx.config.archive,
    })),
  };
}
