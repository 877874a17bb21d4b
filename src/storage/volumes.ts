// The storage's volumes in memory: each one's store (volume-store.ts) and state machine (docs/servers.md §4.2),
// whose steady states are written to the store when a transaction commits.
import { WalbError } from '../common/errors';
import { VolumeState, type Edge } from '../common/state-machine';
import { checkVolumeName } from '../common/volume-name';
import type { WdevClient, WdevStatusReply } from '../wdev/client';
import type { StorageSteadyState, StorageVolumeStore } from './volume-store';

export type StorageState =
  | 'Clear'
  | StorageSteadyState
  | 'InitVol'
  | 'ClearVol'
  | 'FullSync'
  | 'HashSync'
  | 'StartTarget'
  | 'StopTarget'
  | 'Reset'
  | 'StartStandby'
  | 'StopStandby';

const EDGES: Edge<StorageState>[] = [
  { from: 'Clear', via: 'InitVol', to: 'SyncReady' },
  { from: 'SyncReady', via: 'ClearVol', to: 'Clear' },
  { from: 'SyncReady', via: 'FullSync', to: 'Stopped' },
  { from: 'SyncReady', via: 'HashSync', to: 'Stopped' },
  { from: 'Stopped', via: 'Reset', to: 'SyncReady' },
  { from: 'Stopped', via: 'StartTarget', to: 'Target' },
  { from: 'Target', via: 'StopTarget', to: 'Stopped' },
  { from: 'SyncReady', via: 'StartStandby', to: 'Standby' },
  { from: 'Standby', via: 'StopStandby', to: 'SyncReady' },
];

export interface Volume {
  name: string;
  store: StorageVolumeStore;
  state: VolumeState<StorageState>;
  /** A full or hash backup running on the volume has reset its log: the writes since then ship. */
  logReset?: boolean;
}

/**
 * Whether the volume's logs are shipped: in Target, and during a full or hash backup once it has reset the log
 * (the scan's writes reach the archive as diffs; before the reset the log belongs to no stream the archive takes).
 */
export function ships(v: Volume): boolean {
  const s = v.state.state;
  return s === 'Target' || ((s === 'FullSync' || s === 'HashSync') && v.logReset === true);
}

/** Whether the volume's task runs (docs/servers.md §4.5): it ships the logs, or in Standby frees them. */
export function hasLogTask(v: Volume): boolean {
  return ships(v) || v.state.state === 'Standby';
}

/**
 * reset-wal on the volume's wdev (the logs dropped, the overflow cleared, a new uuid) and its records with it: the
 * done record at lsid 0 and gid `gid`, no snapshot queued (docs/servers.md §2.8).
 */
export async function resetLog(v: Volume, wdevd: WdevClient, gid = 0): Promise<WdevStatusReply> {
  const st = await wdevd.resetWal(v.store.wdev);
  await v.store.resetRecords(st.uuid, gid);
  return st;
}

/**
 * A backup's first step (docs/servers.md §7.3, §7.6): the log restarts at lsid 0 with a new uuid, gids from `gid`;
 * from now on the volume's writes ship. The backup clears `logReset` when it ends, whatever the outcome.
 */
export async function resetLogForBackup(v: Volume, wdevd: WdevClient, gid: number): Promise<WdevStatusReply> {
  const st = await resetLog(v, wdevd, gid);
  v.logReset = true;
  return st;
}

export class StorageVolumes {
  private readonly byName = new Map<string, Volume>();

  /** A volume around `store`, in `initial` (Clear for one InitVol is creating); not registered yet. */
  open(store: StorageVolumeStore, initial: StorageState): Volume {
    const state = new VolumeState<StorageState>(store.volume, EDGES, initial, async (s) => {
      if (s !== 'Clear') await store.setState(s as StorageSteadyState);
    });
    return { name: store.volume, store, state };
  }

  add(v: Volume): void {
    this.byName.set(v.name, v);
  }

  delete(name: string): void {
    this.byName.delete(name);
  }

  /** The volume `name`; INVALID_ARGUMENT for a bad name, NOT_FOUND when there is none. */
  get(name: string): Volume {
    checkVolumeName(name);
    const v = this.byName.get(name);
    if (!v) throw new WalbError('NOT_FOUND', `no volume ${name} on this storage`);
    return v;
  }

  find(name: string): Volume | undefined {
    return this.byName.get(name);
  }

  all(): Volume[] {
    return [...this.byName.values()];
  }
}

/** The VolumeState message of a volume. */
export function stateReply(v: Volume) {
  return { volume: v.name, state: v.state.state, actions: v.state.runningActions() };
}
