// A backup group for system tests, as an operator would run it: one walb-wdevd with a wdev per storage, storages
// s0..sN, proxies p0..pN (in priority order on every storage), archives a0..aN (a0 is the primary), a layout
// file and walbc on it; optional relays the tests can cut; proxies that join later and storages restarted with
// another proxy list or archive; and the checks every scenario makes: write through NBD, hash the device through NBD,
// restore a snapshot and hash the image.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { P, RawClient } from './nbd-client';
import type { RunResult } from './processes';
import { Relay } from './relay';
import { type Checks, ServerProc, freePort, walbcOn } from './system-harness';
import { makeTempDir, removeDir } from './temp-files';
import { Wdevd, makeWdevFiles } from './wdevd-harness';

export interface GroupSpec {
  storages?: number;
  proxies?: number;
  archives?: number;
  /** Data device bytes of each wdev (default 16 MiB). */
  ddevBytes?: number;
  /** Log device bytes of each wdev (default 64 MiB). */
  ldevBytes?: number;
  /** The storages' config file content (e.g. fullScanBytesPerSec). */
  storageConfig?: object;
  /** The proxies' config file content (e.g. retryTimeoutSec). */
  proxyConfig?: object;
  /** Every server and walb-wdevd serve their metrics on a loopback port of their own (Group.scrape). */
  metrics?: boolean;
  /** The archives' config file content (e.g. replicateBytesPerSec, fsyncIntervalMb). */
  archiveConfig?: object;
  /** The storages reach the primary archive through a relay the test can cut (Group.archiveRelay). */
  relayArchive?: boolean;
  /** The storages reach each proxy through a relay the test can cut (Group.proxyRelays, one per proxy). */
  relayProxies?: boolean;
}

/** Random writes through NBD until stopped, paced (about 1 MiB/s) so that the log holds them while a storage
 * restarts or the proxies are stopped. */
export class Writer {
  private running: Promise<void> | undefined;
  private stopping = false;

  constructor(
    private readonly g: Group,
    private readonly c: RawClient,
  ) {}

  start(): void {
    this.stopping = false;
    this.running = (async () => {
      while (!this.stopping) {
        await this.g.writeRandom(this.c, 2);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }
}

export class Group {
  readonly storages: ServerProc[] = [];
  readonly proxies: ServerProc[] = [];
  readonly archives: ServerProc[] = [];
  readonly layout: string;
  readonly walbc: (...args: string[]) => Promise<RunResult>;
  /** walbc that must exit 0; its stdout, trimmed. */
  readonly ok: (...args: string[]) => Promise<string>;
  /** With relayArchive: the storages' link to the primary archive. */
  archiveRelay: Relay | undefined;
  /** With relayProxies: the storages' link to each proxy, by the proxy's index. */
  readonly proxyRelays: Relay[] = [];
  private readonly clients: RawClient[] = [];
  private storageConfig = '';
  private proxyConfig = '';
  /** With spec.metrics: the metrics address of each server by its id (s0, p0, a0) and of walb-wdevd ('wdevd'). */
  private readonly metricsAt = new Map<string, string>();

  private constructor(
    t: Checks,
    readonly dir: string,
    readonly wdevd: Wdevd,
    readonly size: number,
    private readonly withMetrics: boolean,
  ) {
    this.layout = path.join(dir, 'layout.json');
    const w = walbcOn(t, this.layout);
    this.walbc = w.run;
    this.ok = w.ok;
  }

  /** Starts everything; wdev `w<i>` belongs to storage s<i>. Call cleanup() in a finally. */
  static async start(t: Checks, name: string, spec: GroupSpec = {}): Promise<Group> {
    const dir = makeTempDir(name);
    const wdevdMetrics = spec.metrics ? `127.0.0.1:${await freePort()}` : '';
    const wdevd = new Wdevd(path.join(dir, 'wdevd'), wdevdMetrics ? ['--metrics-listen', wdevdMetrics] : []);
    const g = new Group(t, dir, wdevd, spec.ddevBytes ?? 16 << 20, spec.metrics === true);
    if (wdevdMetrics) g.metricsAt.set('wdevd', wdevdMetrics);
    try {
      await g.wdevd.start();
      const nS = spec.storages ?? 1;
      for (let i = 0; i < nS; i++) {
        const files = await makeWdevFiles(dir, `w${i}`, {
          ldevBytes: spec.ldevBytes ?? 64 << 20,
          ddevBytes: g.size,
          pbs: 4096,
        });
        await g.wdevd.client.createWdev({ ...files, name: `w${i}` });
      }
      g.proxyConfig = path.join(dir, 'proxy.json');
      fs.writeFileSync(g.proxyConfig, JSON.stringify(spec.proxyConfig ?? {}));
      const archiveConfig = path.join(dir, 'archive.json');
      fs.writeFileSync(archiveConfig, JSON.stringify(spec.archiveConfig ?? {}));
      for (let i = 0; i < (spec.archives ?? 1); i++)
        g.archives.push(
          new ServerProc('walb-archive', path.join(dir, `a${i}`), await freePort(), [
            '--config',
            archiveConfig,
            ...(await g.metricsArgs(`a${i}`)),
          ]),
        );
      for (let i = 0; i < (spec.proxies ?? 1); i++) g.proxies.push(await g.proxyProc(i));
      await Promise.all([...g.archives, ...g.proxies].map((s) => s.start()));
      if (spec.relayArchive) {
        g.archiveRelay = new Relay({ host: '127.0.0.1', port: g.archives[0].port });
        await g.archiveRelay.open();
      }
      if (spec.relayProxies)
        for (const p of g.proxies) {
          const relay = new Relay({ host: '127.0.0.1', port: p.port });
          await relay.open();
          g.proxyRelays.push(relay);
        }
      g.storageConfig = path.join(dir, 'storage.json');
      fs.writeFileSync(g.storageConfig, JSON.stringify(spec.storageConfig ?? {}));
      for (let i = 0; i < nS; i++) {
        const s = await g.storageProc(i, await freePort(), g.proxies);
        await s.start();
        g.storages.push(s);
      }
      g.writeLayout();
      return g;
    } catch (err) {
      await g.cleanup();
      throw err;
    }
  }

  /**
   * Storage s<i> on `port`, sending to `proxies` in that order (through their relays when there are), its primary
   * archive `archive` (default a0, through its relay when there is one).
   */
  private async storageProc(
    i: number,
    port: number,
    proxies: ServerProc[],
    archive?: ServerProc,
  ): Promise<ServerProc> {
    const address = (p: ServerProc) => this.proxyRelays[this.proxies.indexOf(p)]?.address ?? p.address;
    return new ServerProc('walb-storage', path.join(this.dir, `s${i}`), port, [
      ...(await this.metricsArgs(`s${i}`)),
      '--config',
      this.storageConfig,
      '--archive',
      archive?.address ?? this.archiveRelay?.address ?? this.archives[0].address,
      '--proxy',
      proxies.map(address).join(','),
      '--wdevd-socket',
      path.join(this.wdevd.runDir, 'wdevd.sock'),
    ]);
  }

  /**
   * Stops storage s<i> (SIGKILL) and starts it again on its data with another proxy list, and with `archive` as its
   * primary archive when given (its --archive; default a0).
   */
  async restartStorage(i: number, proxies: ServerProc[], archive?: ServerProc): Promise<void> {
    await this.storages[i].kill();
    this.storages[i] = await this.storageProc(i, this.storages[i].port, proxies, archive);
    await this.storages[i].start();
  }

  /** A new proxy p<n> joins: started and added to the layout (no storage sends to it yet). */
  async addProxy(): Promise<ServerProc> {
    const p = await this.proxyProc(this.proxies.length);
    await p.start();
    this.proxies.push(p);
    this.writeLayout();
    return p;
  }

  /** Proxy p<i> with the proxies' config file. */
  private async proxyProc(i: number): Promise<ServerProc> {
    return new ServerProc('walb-proxy', path.join(this.dir, `p${i}`), await freePort(), [
      '--config',
      this.proxyConfig,
      ...(await this.metricsArgs(`p${i}`)),
    ]);
  }

  /** With spec.metrics: --metrics-listen on a free loopback port, the same one each time for server `id`. */
  private async metricsArgs(id: string): Promise<string[]> {
    if (!this.withMetrics) return [];
    let at = this.metricsAt.get(id);
    if (!at) {
      at = `127.0.0.1:${await freePort()}`;
      this.metricsAt.set(id, at);
    }
    return ['--metrics-listen', at];
  }

  /** The metrics text of server `id` (s0, p0, a0, or 'wdevd'), read over HTTP as Prometheus does. */
  scrape(id: string): Promise<string> {
    const at = this.metricsAt.get(id);
    if (!at) throw new Error(`no metrics address for ${id} (start the group with metrics: true)`);
    return new Promise((resolve, reject) => {
      http
        .get(`http://${at}/metrics`, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () =>
            res.statusCode === 200
              ? resolve(body)
              : reject(new Error(`${id}: HTTP ${res.statusCode}: ${body}`)),
          );
        })
        .on('error', reject);
    });
  }

  /** (Re)writes the layout file from the servers' addresses; archive a<primary> is listed first (the primary). */
  writeLayout(primary = 0): void {
    const ids = (prefix: string, servers: ServerProc[]) =>
      servers.map((s, i) => ({ id: `${prefix}${i}`, address: s.address }));
    const archives = ids('a', this.archives);
    fs.writeFileSync(
      this.layout,
      JSON.stringify({
        storages: ids('s', this.storages),
        proxies: ids('p', this.proxies),
        archives: [archives[primary], ...archives.filter((_, i) => i !== primary)],
      }),
    );
  }

  /** An NBD connection to wdev `w<i>`, closed by cleanup(). */
  async nbd(i = 0): Promise<RawClient> {
    const { c } = await RawClient.go(this.wdevd.nbdSocket, `w${i}`);
    this.clients.push(c);
    return c;
  }

  /**
   * `n` random writes of 4-128 KiB at random 4 KiB-aligned places (within `limit` bytes), then a flush. Given
   * several clients, each write goes to all of them, as software RAID1 does to its legs.
   */
  async writeRandom(c: RawClient | RawClient[], n: number, limit = this.size): Promise<void> {
    const legs = Array.isArray(c) ? c : [c];
    for (let i = 0; i < n; i++) {
      const len = 4096 * (1 + crypto.randomInt(32));
      const off = 4096 * crypto.randomInt((limit - len) / 4096);
      const data = crypto.randomBytes(len);
      for (const leg of legs)
        if ((await leg.writeAt(i + 1, off, data)) !== 0) throw new Error('write failed');
    }
    for (const leg of legs)
      if ((await leg.simple(P.NBD_CMD_FLUSH, 99999, 0, 0)) !== 0) throw new Error('flush failed');
  }

  /** SHA-1 of a whole device read through NBD. */
  async deviceHash(c: RawClient, size = this.size): Promise<string> {
    const h = crypto.createHash('sha1');
    for (let off = 0, handle = 1000; off < size; off += 1 << 20, handle++) {
      const r = await c.readAt(handle, off, Math.min(1 << 20, size - off));
      if (r.error) throw new Error(`read at ${off}: NBD error ${r.error}`);
      h.update(r.data);
    }
    return h.digest('hex');
  }

  /** Restores `gid` on an archive, hashes the image (SHA-1) and deletes it again. */
  async restoredHash(volume: string, gid: number, archive = 'a0'): Promise<string> {
    const r = JSON.parse(
      await this.ok('restore', volume, String(gid), '--wait', '--json', '--archive', archive),
    ) as { result: string };
    const hash = crypto.createHash('sha1').update(fs.readFileSync(r.result)).digest('hex');
    await this.ok('del-restored', volume, String(gid), '--archive', archive);
    return hash;
  }

  /** What each of `gids` restores to on an archive (restoredHash): taken before a recovery, compared after it. */
  async restoredHashes(volume: string, gids: number[], archive = 'a0'): Promise<Map<number, string>> {
    const hashes = new Map<number, string>();
    for (const gid of gids) hashes.set(gid, await this.restoredHash(volume, gid, archive));
    return hashes;
  }

  /** The restorable gids on an archive (all of them, implicit ones too). */
  async restorable(volume: string, archive = 'a0'): Promise<number[]> {
    const list = JSON.parse(
      await this.ok('get-restorable', volume, '--all', '--json', '--archive', archive),
    ) as { gid: number }[];
    return list.map((s) => Number(s.gid));
  }

  async cleanup(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await Promise.all([...this.storages, ...this.proxies, ...this.archives].map((s) => s.kill()));
    await this.archiveRelay?.cut();
    for (const r of this.proxyRelays) await r.cut();
    await this.wdevd.cleanup();
    removeDir(this.dir);
  }
}
