// The archive's volume lifecycle commands (docs/servers.md §6.3, §8): InitVol, ClearVol, ResetVol, Start and Stop,
// each a transaction of the volume's state machine over the volume store, and Resize, an action that grows the
// base image.
import { unary } from '../common/grpc';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ArchiveContext } from './context';
import { ACTIVE_STATES, checkClearVol, checkResize } from './policy';
import { ArchiveVolumeStore } from './volume-store';

export function lifecycleHandlers(
  ctx: ArchiveContext,
): Pick<ArchiveHandlers, 'InitVol' | 'ClearVol' | 'ResetVol' | 'Start' | 'Stop' | 'Resize'> {
  const { volumes, config, log, ops } = ctx;
  return {
    InitVol: unary(async (req) => {
      const v = volumes.getOrAdd(req.volume);
      await v.state.transact('InitVol', async () => {
        v.store = await ArchiveVolumeStore.init(config.dataDir, req.volume);
      });
      log('info', 'init-vol', { volume: req.volume });
      return volumes.reply(v);
    }),
    ClearVol: unary(async (req) => {
      const v = volumes.get(req.volume);
      checkClearVol(req.volume, ctx.busy(v));
      await v.state.transact('ClearVol', async () => {
        await ArchiveVolumeStore.remove(config.dataDir, req.volume);
        v.store = undefined;
      });
      volumes.delete(req.volume);
      log('info', 'clear-vol', { volume: req.volume });
      return { volume: req.volume, state: 'Clear', actions: [] };
    }),
    ResetVol: unary(async (req) => {
      const v = volumes.get(req.volume);
      await v.state.transact('ResetVol', async () => {
        await ArchiveVolumeStore.remove(config.dataDir, req.volume);
        v.store = await ArchiveVolumeStore.init(config.dataDir, req.volume);
      });
      return volumes.reply(v);
    }),
    Start: unary(async (req) => {
      const v = volumes.get(req.volume);
      await v.state.transact('Start', async () => undefined);
      return volumes.reply(v);
    }),
    Stop: unary(async (req) => {
      const v = volumes.get(req.volume);
      v.state.require(ACTIVE_STATES, 'stop');
      return ops.start('stop', req.volume, async () => {
        v.state.stop = req.mode === 'force' ? 'force-stopping' : 'stopping';
        try {
          await v.state.waitUntilIdle();
          await v.state.transact('Stop', async () => undefined);
        } finally {
          v.state.stop = 'not-stopping';
        }
      });
    }),
    Resize: unary(async (req) => {
      const v = volumes.get(req.volume);
      checkResize(req.volume, volumes.facts(v), v.state.runningActions(), req.size);
      const store = volumes.store(v);
      const end = v.state.beginAction('Resize');
      try {
        const fromLb = store.sizeLb;
        await store.grow(req.size, req.zeroClear);
        log('info', 'resized', { volume: req.volume, fromLb, toLb: req.size, zeroClear: req.zeroClear });
      } finally {
        end();
      }
      return { volume: req.volume, size: store.sizeLb };
    }),
  };
}
