// What the archive's handlers share (docs/servers.md §6, §3.1-3.2): its volumes in memory — each one's state
// machine and, unless Clear, its volume store — and the server's config, logger, operations, foreground limit,
// snapshot exports and bulk receiver. The server (server.ts) owns them and hands them over.
import { WalbError } from '../common/errors';
import type { ForegroundSlots } from '../common/foreground';
import type { Logger } from '../common/log';
import type { OperationRegistry } from '../common/operations';
import { VolumeState } from '../common/state-machine';
import { checkVolumeName } from '../common/volume-name';
import type { ArchiveConfig } from '../config/archive';
import type { VolumeState as VolumeStateReply } from '../generated/walb/v1/VolumeState';
import type { BulkReceiver } from '../native';
import { ARCHIVE_EDGES, type ArchiveState, type ArchiveSteadyState, type VolumeFacts } from './policy';
import type { ArchiveExports } from './exports';
import { ArchiveVolumeStore } from './volume-store';

export interface ArchiveVolume {
  state: VolumeState<ArchiveState>;
  /** Absent while Clear. */
  store?: ArchiveVolumeStore;
}

export interface ArchiveContext {
  config: ArchiveConfig;
  log: Logger;
  ops: OperationRegistry;
  foreground: ForegroundSlots;
  volumes: ArchiveVolumes;
  /** Snapshots served over NBD (docs/servers.md §6.10). */
  exports: ArchiveExports;
  /** The volume's running actions, with 'Export' while it has an export: what apply, merge and gc check. */
  busy(v: ArchiveVolume): string[];
  /** The native receiver of full-backup bytes; undefined when turned off (docs/servers.md §7.4). */
  bulk(): BulkReceiver | undefined;
  /** Counts the bytes of a transfer taken (docs/operations.md, "Metrics"). */
  received(kind: 'full' | 'hash' | 'wdiff' | 'replica' | 'resync', volume: string, bytes: number): void;
  /** What the maintenance worker last did for the volume (docs/servers.md §6.8); empty when it is off. */
  maintenanceStatus(volume: string): string;
}

/** The volumes of this archive by name. */
export class ArchiveVolumes {
  private readonly byName = new Map<string, ArchiveVolume>();

  constructor(private readonly dataDir: string) {}

  /** Opens every volume of the data directory (recovering from a crash); an inconsistent one throws. */
  async load(): Promise<void> {
    for (const name of ArchiveVolumeStore.volumesIn(this.dataDir)) {
      const store = await ArchiveVolumeStore.open(this.dataDir, name);
      this.byName.set(name, { state: this.newState(name, store.state, store), store });
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  all(): ArchiveVolume[] {
    return [...this.byName.values()];
  }

  find(name: string): ArchiveVolume | undefined {
    return this.byName.get(name);
  }

  /** The volume, NOT_FOUND when the archive has none of that name. */
  get(name: string): ArchiveVolume {
    checkVolumeName(name);
    const v = this.byName.get(name);
    if (!v) throw new WalbError('NOT_FOUND', `no volume ${name} on this archive`);
    return v;
  }

  /** The volume, created Clear when it is new (InitVol). */
  getOrAdd(name: string): ArchiveVolume {
    checkVolumeName(name);
    let v = this.byName.get(name);
    if (!v) {
      v = { state: this.newState(name, 'Clear') };
      this.byName.set(name, v);
    }
    return v;
  }

  delete(name: string): void {
    this.byName.delete(name);
  }

  /** The store of a volume that is not Clear. */
  store(v: ArchiveVolume): ArchiveVolumeStore {
    if (!v.store) throw new WalbError('FAILED_PRECONDITION', `volume ${v.state.volume} is Clear`);
    return v.store;
  }

  /** What the policy decides on. */
  facts(v: ArchiveVolume): VolumeFacts {
    return { state: v.state.state, stop: v.state.stop, stored: v.store };
  }

  reply(v: ArchiveVolume): VolumeStateReply {
    return { volume: v.state.volume, state: v.state.state, actions: v.state.runningActions() };
  }

  /** A steady state other than Clear is written to meta.json before it takes effect (docs/servers.md §3.1). */
  private newState(
    volume: string,
    initial: ArchiveState,
    store?: ArchiveVolumeStore,
  ): VolumeState<ArchiveState> {
    return new VolumeState<ArchiveState>(volume, ARCHIVE_EDGES, initial, async (s) => {
      const st = store ?? this.byName.get(volume)?.store;
      if (st && s !== 'Clear') await st.setState(s as ArchiveSteadyState);
    });
  }
}
