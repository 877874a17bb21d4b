// The archive's snapshot exports (docs/servers.md §6.10): restorable snapshots served read-only over NBD, read
// virtually from the base image and the diffs their restore needs. One NBD server per listen address (the unix
// socket, and TCP when configured) shares one registry; an export is named VOLUME/GID. Exports live in memory
// only: the archive's stop ends them, and a start begins with none.
import { WalbError } from '../common/errors';
import type { Logger } from '../common/log';
import type { ArchiveConfig } from '../config/archive';
import { MapExportRegistry, NbdServer, SnapshotExport, type NbdLogRecord } from '../nbd';

export interface ExportInfo {
  volume: string;
  gid: number;
  name: string;
  uris: string[];
  size: number;
  /** Unix time the export began. */
  since: number;
  connections: number;
}

interface Entry {
  volume: string;
  gid: number;
  since: number;
  snapshot: SnapshotExport;
}

export function exportName(volume: string, gid: number): string {
  return `${volume}/${gid}`;
}

export class ArchiveExports {
  private readonly registry = new MapExportRegistry();
  private readonly servers: NbdServer[] = [];
  private readonly entries = new Map<string, Entry>();
  /** Exports being opened, counted against maxExports and refused twice. */
  private readonly opening = new Set<string>();

  constructor(
    private readonly config: ArchiveConfig['export'],
    private readonly log: Logger,
  ) {}

  async listen(): Promise<void> {
    const logger = (r: NbdLogRecord) => {
      const { level, event, ...rest } = r;
      this.log(level, `nbd-${event}`, rest);
    };
    this.servers.push(
      new NbdServer({ registry: this.registry, listen: { path: this.config.socket, mode: 0o660 }, logger }),
    );
    if (this.config.tcp) {
      const [host, port] = this.config.tcp.split(':');
      const allowRemote = this.config.tcpAllowRemote;
      this.servers.push(
        new NbdServer({ registry: this.registry, listen: { host, port: Number(port), allowRemote }, logger }),
      );
    }
    for (const s of this.servers) await s.listen();
  }

  /** Where clients find the exports: the bound addresses (TCP with its real port). */
  addresses(): string[] {
    return this.servers.map((s) => {
      const a = s.address;
      return !a ? '' : 'path' in a ? a.path : `${a.host}:${a.port}`;
    });
  }

  /** The gids of a volume exported now. */
  gids(volume: string): number[] {
    return [...this.entries.values()].filter((e) => e.volume === volume).map((e) => e.gid);
  }

  /** 'Export' while the volume has an export or one is opening: the action that apply, merge and gc give way to. */
  actions(volume: string): string[] {
    const opening = [...this.opening].some((n) => n.startsWith(`${volume}/`));
    return opening || this.gids(volume).length ? ['Export'] : [];
  }

  /** Opens and serves snapshot `gid` of `volume` from the base image and its diffs (oldest first). */
  async add(volume: string, gid: number, base: string, diffs: string[]): Promise<ExportInfo> {
    const name = exportName(volume, gid);
    if (this.entries.has(name) || this.opening.has(name))
      throw new WalbError('ALREADY_EXISTS', `gid ${gid} of ${volume} is exported already`);
    if (this.entries.size + this.opening.size >= this.config.maxExports)
      throw new WalbError(
        'FAILED_PRECONDITION',
        `${this.config.maxExports} exports already (export.maxExports): unexport one first`,
      );
    this.opening.add(name);
    try {
      const snapshot = await SnapshotExport.open(base, diffs, {
        name,
        description: `snapshot ${gid} of ${volume} (read-only)`,
        threads: this.config.threads,
      });
      const entry = { volume, gid, since: Math.floor(Date.now() / 1000), snapshot };
      this.entries.set(name, entry);
      this.registry.add(snapshot);
      this.log('info', 'exported', {
        volume,
        gid,
        diffs: diffs.length,
        size: snapshot.size,
        ...snapshot.indexed(),
      });
      return this.info(entry);
    } finally {
      this.opening.delete(name);
    }
  }

  /** Stops serving an export: new clients cannot select it, its connections end gracefully, then it closes. */
  async remove(volume: string, gid: number): Promise<void> {
    const name = exportName(volume, gid);
    const entry = this.entries.get(name);
    if (!entry) throw new WalbError('NOT_FOUND', `gid ${gid} of ${volume} is not exported`);
    this.registry.remove(name);
    this.entries.delete(name);
    await Promise.all(this.servers.map((s) => s.disconnectExport(name)));
    entry.snapshot.close();
    this.log('info', 'unexported', { volume, gid });
  }

  list(volume?: string): ExportInfo[] {
    return [...this.entries.values()].filter((e) => !volume || e.volume === volume).map((e) => this.info(e));
  }

  /** The archive's stop: every connection ends (cut after `timeoutMs`), then every export closes. */
  async close(timeoutMs: number): Promise<void> {
    for (const name of this.entries.keys()) this.registry.remove(name);
    await Promise.all(this.servers.map((s) => s.close({ timeoutMs })));
    for (const e of this.entries.values()) e.snapshot.close();
    this.entries.clear();
  }

  private info(e: Entry): ExportInfo {
    const name = exportName(e.volume, e.gid);
    return {
      volume: e.volume,
      gid: e.gid,
      name,
      uris: this.servers.map((s) => s.uri(name)),
      size: e.snapshot.size,
      since: e.since,
      connections: this.servers.reduce(
        (a, s) => a + s.connections().filter((c) => c.export === name).length,
        0,
      ),
    };
  }
}
