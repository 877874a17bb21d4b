// The proxy's commands that change a volume (docs/servers.md §5.3, §8): archive registrations, start, stop, clear
// and kick. Each checks the request, runs the state machine's transaction and leaves the files to the store, the
// decisions to the policy and the sends to the sender.
import { WalbError } from '../common/errors';
import { unary } from '../common/grpc';
import { checkVolumeName } from '../common/volume-name';
import type { ProxyHandlers } from '../generated/walb/v1/Proxy';
import { FORWARDING_STATES, archiveEntry, checkArchiveInfo, checkRegistered, forwards } from './policy';
import type { ProxyContext } from './server';
import { ProxyVolume, requireVolume } from './volume';
import { ProxyVolumeStore } from './volume-store';

/** How long a stop waits for idle, and `stop empty` for the queues to drain (docs/servers.md §8). */
const STOP_WAIT_MS = 60_000;
const DRAIN_POLL_MS = 200;

type VolumeHandlers = Pick<
  ProxyHandlers,
  'ArchiveInfoAdd' | 'ArchiveInfoUpdate' | 'ArchiveInfoDelete' | 'Start' | 'Stop' | 'ClearVol' | 'Kick'
>;

export function volumeHandlers(ctx: ProxyContext): VolumeHandlers {
  const register = (want: 'new' | 'registered'): ProxyHandlers['ArchiveInfoAdd'] =>
    unary(async (req) => {
      checkVolumeName(req.volume);
      checkArchiveInfo(req);
      const found = ctx.volumes.get(req.volume);
      checkRegistered(req.volume, req.name, found?.store.archive(req.name) !== undefined, want);
      const v = found ?? new ProxyVolume(ProxyVolumeStore.empty(ctx.config.dataDir, req.volume), 'Clear');
      ctx.volumes.set(req.volume, v);
      try {
        await v.state.transact('ArchiveInfo', () => v.store.putArchive(archiveEntry(req)));
      } finally {
        if (v.state.state === 'Clear') ctx.volumes.delete(req.volume);
      }
      return {};
    });
  return {
    ArchiveInfoAdd: register('new'),
    ArchiveInfoUpdate: register('registered'),
    ArchiveInfoDelete: unary(async (req) => {
      const v = requireVolume(ctx.volumes, req.volume);
      v.state.require(['Stopped'], 'archive-info delete');
      checkRegistered(req.volume, req.name, v.store.archive(req.name) !== undefined, 'registered');
      if (v.store.archives.length === 1) {
        await v.state.transact('ClearVol', () => v.store.destroy());
        ctx.volumes.delete(req.volume);
      } else {
        await v.state.transact('ArchiveInfo', () => v.store.removeArchive(req.name));
      }
      return {};
    }),
    Start: unary(async (req) => {
      const v = requireVolume(ctx.volumes, req.volume);
      await startVolume(ctx, v);
      return v.describe();
    }),
    Stop: unary(async (req) => {
      const v = requireVolume(ctx.volumes, req.volume);
      // A wlog being received or a send in progress is waited for, as WalB's stop does.
      v.state.require(FORWARDING_STATES, 'stop');
      return ctx.ops.start('stop', req.volume, () =>
        req.mode === 'empty' ? stopWhenEmpty(ctx, v) : stopNow(ctx, v, req.mode === 'force'),
      );
    }),
    ClearVol: unary(async (req) => {
      const v = requireVolume(ctx.volumes, req.volume);
      if (v.state.runningActions().length)
        throw new WalbError('FAILED_PRECONDITION', `volume ${req.volume} is sending`);
      await v.state.transact('ClearVol', () => v.store.destroy());
      ctx.volumes.delete(req.volume);
      return { volume: req.volume, state: 'Clear', actions: [] };
    }),
    Kick: unary(async (req) => {
      const vols = req.volume ? [requireVolume(ctx.volumes, req.volume)] : [...ctx.volumes.values()];
      for (const v of vols) {
        if (!forwards(v.state.state)) continue;
        for (const a of v.store.archives)
          if (!req.archive || a.name === req.archive) ctx.sender.kick(v, a.name);
      }
      return {};
    }),
  };
}

/** Stopped → Started after the recovery of docs/servers.md §5.4, then every archive's send now. */
export async function startVolume(ctx: ProxyContext, v: ProxyVolume): Promise<void> {
  await v.state.transact('Start', () => v.recover());
  ctx.sender.sendAllNow(v);
}

/** Graceful or force stop: refuse new wlogs, wait for idle, drop the queued sends, Stopped. */
async function stopNow(ctx: ProxyContext, v: ProxyVolume, force: boolean): Promise<void> {
  v.state.stop = force ? 'force-stopping' : 'stopping';
  try {
    await v.state.waitUntilIdle(STOP_WAIT_MS);
    ctx.sender.drop(v);
    await v.state.transact('Stop', async () => undefined);
  } finally {
    v.state.stop = 'not-stopping';
  }
}

/** `stop empty`: refuse new wlogs, keep sending until nothing is staged, queued or being sent, then Stopped. */
async function stopWhenEmpty(ctx: ProxyContext, v: ProxyVolume): Promise<void> {
  v.state.stop = 'waiting-for-empty';
  try {
    await v.state.waitUntilIdle(STOP_WAIT_MS);
    await v.state.transact('WaitForEmpty', async () => {
      const deadline = Date.now() + STOP_WAIT_MS;
      while ((await v.store.pendingCount()) + v.state.runningActions().length > 0) {
        if (Date.now() > deadline)
          throw new WalbError('FAILED_PRECONDITION', 'wdiffs still to send after 60 s');
        ctx.sender.sendAll(v);
        await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      }
    });
  } finally {
    v.state.stop = 'not-stopping';
  }
}
