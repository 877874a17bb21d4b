// The storage's volume lifecycle commands (docs/servers.md §4.3, §8): InitVol, ClearVol, ResetVol, Start (target or
// standby), Stop, Resize.
import { unary } from '../common/grpc';
import { checkVolumeName } from '../common/volume-name';
import type { StorageHandlers } from '../generated/walb/v1/Storage';
import { checkInitVol, checkResize, startPlan } from './policy';
import type { StorageContext } from './server';
import { StorageVolumeStore } from './volume-store';
import { resetLog, stateReply } from './volumes';

export function volumeHandlers(
  ctx: StorageContext,
): Pick<StorageHandlers, 'InitVol' | 'ClearVol' | 'ResetVol' | 'Start' | 'Stop' | 'Resize'> {
  const { volumes, wdevd, log } = ctx;
  return {
    InitVol: unary(async (req) => {
      checkVolumeName(req.volume);
      checkInitVol(
        req.volume,
        req.wdev,
        volumes.all().map((v) => ({ name: v.name, wdev: v.store.wdev })),
      );
      await wdevd.status(req.wdev); // must exist
      const v = volumes.open(StorageVolumeStore.blank(ctx.config.dataDir, req.volume, req.wdev), 'Clear');
      await v.state.transact('InitVol', () => v.store.create());
      volumes.add(v);
      return stateReply(v);
    }),
    ClearVol: unary(async (req) => {
      const v = volumes.get(req.volume);
      await v.state.transact('ClearVol', () => v.store.remove());
      volumes.delete(req.volume);
      return { volume: req.volume, state: 'Clear', actions: [] };
    }),
    ResetVol: unary(async (req) => {
      const v = volumes.get(req.volume);
      await v.state.transact('Reset', async () => {
        await resetLog(v, wdevd);
      });
      return stateReply(v);
    }),
    Start: unary(async (req) => {
      const v = volumes.get(req.volume);
      const plan = startPlan(req.mode, (await wdevd.status(v.store.wdev)).overflow, v.store.wdev);
      await v.state.transact(plan.via, async () => {
        if (!plan.resetWal) return;
        const st = await resetLog(v, wdevd);
        ctx.log('warn', 'overflow-reset', { volume: v.name, wdev: v.store.wdev, uuid: st.uuid });
      });
      ctx.wlogTasks.push(v.name);
      return stateReply(v);
    }),
    Stop: unary(async (req) => {
      const v = volumes.get(req.volume);
      v.state.require(['Target', 'Standby'], 'stop');
      const via = v.state.state === 'Standby' ? 'StopStandby' : 'StopTarget';
      return ctx.ops.start('stop', v.name, async () => {
        v.state.stop = req.mode === 'force' ? 'force-stopping' : 'stopping';
        try {
          await v.state.waitUntilIdle();
          ctx.wlogTasks.remove(v.name);
          await v.state.transact(via, async () => undefined);
        } finally {
          v.state.stop = 'not-stopping';
        }
      });
    }),
    Resize: unary(async (req) => {
      const v = volumes.get(req.volume);
      const before = await wdevd.status(v.store.wdev);
      checkResize(req.volume, v.state.state, before.deviceSize, req.size);
      const after = await wdevd.resize(v.store.wdev, req.size);
      log('info', 'resized', { volume: req.volume, fromLb: before.deviceSize, toLb: after.deviceSize });
      return { volume: req.volume, size: after.deviceSize };
    }),
  };
}
