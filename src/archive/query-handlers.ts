// The archive's read-only commands (docs/servers.md §6.3, §6.8, §9.4): GetState, ListVolumes, Status, GetRestorable
// and ListRestored.
import { unary } from '../common/grpc';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext } from './context';
import { ACTIVE_STATES, latestSnap, restorableSnaps } from './policy';

export function queryHandlers(
  ctx: ArchiveContext,
): Pick<ArchiveHandlers, 'GetState' | 'ListVolumes' | 'Status' | 'GetRestorable' | 'ListRestored'> {
  const { volumes } = ctx;
  return {
    GetState: unary(async (req) => {
      const v = volumes.find(req.volume);
      return v ? volumes.reply(v) : { volume: req.volume, state: 'Clear', actions: [] };
    }),
    ListVolumes: unary(async () => ({ volumes: volumes.all().map((v) => volumes.reply(v)) })),
    Status: unary(async (req) => {
      const v = volumes.get(req.volume);
      const s = volumes.store(v);
      const diffs = s.diffs.all();
      const usage = s.diskUsage();
      return {
        state: volumes.reply(v),
        storageUuid: s.storageUuid,
        archiveUuid: s.archiveUuid,
        base: s.base?.snapB,
        latest: s.base ? latestSnap(s.base, s.diffs) : undefined,
        size: s.sizeLb,
        diffs: diffs.length,
        diffBytes: diffs.reduce((a, d) => a + d.dataSize, 0),
        restored: s.listRestored(),
        diffList: diffs.map((d) => ({
          snapB: d.snapB,
          snapE: d.snapE,
          mergeable: d.isMergeable,
          compDiff: d.isCompDiff,
          timestamp: d.timestamp,
          dataSize: d.dataSize,
        })),
        baseDiskBytes: usage.baseBytes,
        diffDiskBytes: usage.diffBytes,
        restoredDiskBytes: usage.restoredBytes,
        maintenance: ctx.maintenanceStatus(req.volume),
      };
    }),
    GetRestorable: unary(async (req) => {
      const v = volumes.get(req.volume);
      const list = ACTIVE_STATES.includes(v.state.state) ? restorableSnaps(volumes.store(v), req.all) : [];
      return {
        snapshots: list.map((r) => ({ gid: r.gid, timestamp: r.timestamp, explicit: r.isExplicit })),
      };
    }),
    ListRestored: unary(async (req) => ({
      gids: volumes.store(volumes.get(req.volume)).listRestored(),
    })),
  };
}
