// The wdevs walb-wdevd hosts, persisted so that they come back after a restart (STATEDIR/wdevs.json, written
// atomically). Only what is needed to reopen a device is kept; lsids live in the ldev's super sector.
import path from 'node:path';
import { readJson, writeJsonAtomic } from '../common/atomic-file';
import { WalbError } from '../common/errors';
import type { WdevOptions } from '../native';

export interface WdevEntry {
  name: string;
  ldev: string;
  ddev: string;
  options: WdevOptions;
}

interface RegistryFile {
  version: 1;
  wdevs: WdevEntry[];
}

export class WdevRegistry {
  readonly file: string;
  private entries = new Map<string, WdevEntry>();

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'wdevs.json');
  }

  async load(): Promise<WdevEntry[]> {
    let data: RegistryFile | undefined;
    try {
      data = await readJson<RegistryFile>(this.file);
    } catch (err) {
      throw new WalbError(
        'CORRUPTION',
        `cannot read the wdev registry ${this.file}: ${(err as Error).message}`,
      );
    }
    this.entries = new Map((data?.wdevs ?? []).map((e) => [e.name, e]));
    return this.list();
  }

  list(): WdevEntry[] {
    return [...this.entries.values()];
  }

  get(name: string): WdevEntry | undefined {
    return this.entries.get(name);
  }

  async add(entry: WdevEntry): Promise<void> {
    this.entries.set(entry.name, entry);
    await this.save();
  }

  async remove(name: string): Promise<void> {
    this.entries.delete(name);
    await this.save();
  }

  private async save(): Promise<void> {
    const data: RegistryFile = { version: 1, wdevs: this.list() };
    await writeJsonAtomic(this.file, data);
  }
}
