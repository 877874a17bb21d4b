// The storage's volumes in memory: each one's store (volume-store.ts) and state machine (docs/servers.md §4.2),
// whose steady states are written to the store when a transaction commits.
import { WalbError } from '../common/errors';
import { VolumeState, type Edge } from '../common/state-machine';
import { checkVolumeName } from '../common/volume-name';
import type { StorageSteadyState, StorageVolumeStore } from './volume-store';

export type StorageState =
  | 'Clear'
  | StorageSteadyState
  | 'InitVol'
  | 'ClearVol'
  | 'FullSync'
  | 'StartTarget'
  | 'StopTarget'
  | 'Reset'
  | 'StartStandby'
  | 'StopStandby';

// Hash backup comes later (docs/servers.md §11).
const EDGES: Edge<StorageState>[] = [
  { from: 'Clear', via: 'InitVol', to: 'SyncReady' },
  { from: 'SyncReady', via: 'ClearVol', to: 'Clear' },
  { from: 'SyncReady', via: 'FullSync', to: 'Stopped' },
  { from: 'Stopped', via: 'Reset', to: 'SyncReady' },
  { from: 'Stopped', via: 'StartTarget', to: 'Target' },
  { from: 'Target', via: 'StopTarget', to: 'Stopped' },
  { from: 'SyncReady', via: 'StartStandby', to: 'Standby' },
  { from: 'Standby', via: 'StopStandby', to: 'SyncReady' },
];

/** The states in which logs are shipped (a full backup's writes reach the archive as diffs). */
export const SHIPPING: readonly StorageState[] = ['Target', 'FullSync'];

/** The states in which the volume's task runs (docs/servers.md §4.5): it ships the logs, or in Standby frees them. */
export const LOG_TASK: readonly StorageState[] = [...SHIPPING, 'Standby'];

export interface Volume {
  name: string;
  store: StorageVolumeStore;
  state: VolumeState<StorageState>;
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
