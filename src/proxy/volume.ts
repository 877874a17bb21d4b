// One volume as walb-proxy holds it while it runs: its files (the store), its state machine (docs/servers.md §5.2)
// and what lives in memory only and starts afresh with the server (docs/servers.md §10.2): the archives it gave up
// on (docs/servers.md §7.5) and when the last wlog arrived.
import { WalbError } from '../common/errors';
import { VolumeState } from '../common/state-machine';
import { checkVolumeName } from '../common/volume-name';
import { PROXY_EDGES, type ProxyState } from './policy';
import type { ProxyVolumeStore } from './volume-store';

export class ProxyVolume {
  readonly state: VolumeState<ProxyState>;
  /** Archives the proxy gave up on: no send runs there until a kick, a start or a new wlog. */
  readonly sendError = new Set<string>();
  lastWlogMs = Date.now();

  constructor(
    readonly store: ProxyVolumeStore,
    initial: ProxyState,
  ) {
    this.state = new VolumeState<ProxyState>(store.volume, PROXY_EDGES, initial);
  }

  get name(): string {
    return this.store.volume;
  }

  /** Recovery of docs/servers.md §5.4: the store's files, and the give-up flags start cleared. */
  async recover(): Promise<void> {
    await this.store.recover();
    this.sendError.clear();
  }

  /** GetState's answer. */
  describe(): { volume: string; state: ProxyState; actions: string[] } {
    return { volume: this.name, state: this.state.state, actions: this.state.runningActions() };
  }
}

/** The volume of that name; NOT_FOUND when the proxy has none. */
export function requireVolume(volumes: ReadonlyMap<string, ProxyVolume>, name: string): ProxyVolume {
  checkVolumeName(name);
  const v = volumes.get(name);
  if (!v) throw new WalbError('NOT_FOUND', `no volume ${name} on this proxy`);
  return v;
}
