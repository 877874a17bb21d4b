// Scenario 1 of docs/servers.md §12, the driver that the CI test (test/system/scenario1.test.ts) and the soak
// (test/scenario1-soak.ts, `npm run soak`) share: three volumes on one storage of the group [s0] [p0] [a0], writes
// going on through NBD on all of them, and rounds of random actions as an operator runs them through walbc: full
// backup, snapshot, hash backup, merge (a middle snapshot disabled first), apply, stop and start of one server for
// a volume, and SIGKILL and restart of a whole server.
//
// A model keeps what each volume must restore: every snapshot taken, with the SHA-1 of the device read through NBD
// when it was taken (writes to that volume paused, so the content is exact). After each round, for every volume:
// the archive's restorable list equals the model's (plus the archive's newest snapshot), and the snapshots the
// round touched plus one at random are restored and compared byte for byte (by hash); every tenth round and at the
// end, every snapshot of known content is. A snapshot leaves the model only when applied past, disabled, or dropped
// by a new full backup (which resets the archive).
//
// Every choice comes from one seeded PRNG, drawn at the start of each round in volume order, so a seed replays the
// same actions on the same servers. Gids depend on when logs were shipped, so which snapshot an apply or a merge
// picks (by its place in the model) can differ when the timing does. Actions draw from a shuffled deck, so every
// kind runs once per deck.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Controller, loadLayout } from '../src/controller/controller';
import type { Group } from './group-fixture';
import { Writer } from './group-fixture';
import type { RawClient } from './nbd-client';
import { WALBC } from './system-harness';
import { run } from './processes';
import { makeWdevFiles } from './wdevd-harness';

export const VOLUMES = 3;

type Action = 'snapshot' | 'full-backup' | 'hash-backup' | 'merge' | 'apply' | 'stop-start' | 'kill';

/** One deck: every kind at least once; snapshots and merges twice (merges need snapshots to work on). */
const DECK: Action[] = [
  'snapshot',
  'snapshot',
  'full-backup',
  'hash-backup',
  'merge',
  'merge',
  'apply',
  'stop-start',
  'stop-start',
  'kill',
];
const BUSY = /too many foreground tasks/;
/** Every this many rounds, every snapshot of known content is restored and compared, not only the round's. */
const FULL_CHECK_ROUNDS = 10;
export const DECK_SIZE = DECK.length;

/** The servers a volume's stop/start and a kill pick from, with the stop modes each one has. */
const SERVERS: Record<string, string[]> = {
  s0: ['graceful', 'force'],
  p0: ['graceful', 'force', 'empty'],
  a0: ['graceful', 'force'],
};

/** mulberry32: a small seeded PRNG; enough for choosing actions, and the same on every machine. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let x = this.s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

/** A seed from WALB_SCENARIO1_SEED when set (to replay a failure), otherwise a random one. */
export function scenarioSeed(): number {
  const given = process.env.WALB_SCENARIO1_SEED;
  return given === undefined || given === '' ? crypto.randomInt(2 ** 32) : Number(given) >>> 0;
}

interface Snap {
  gid: number;
  /** SHA-1 of the device at the snapshot; unknown for a backup taken while writes went on. */
  hash?: string;
}

/** What one volume must restore, and the gids where a hash backup left a compared diff (no merge crosses one). */
class VolumeModel {
  snaps: Snap[] = [];
  hashBackupGids: number[] = [];
  constructor(
    readonly name: string,
    readonly c: RawClient,
    readonly writer: Writer,
  ) {}

  add(s: Snap): void {
    this.snaps.push(s);
    this.snaps.sort((x, y) => x.gid - y.gid);
  }
}

/** What an action did, and the gids of its volume it touched (restored in the check). */
interface Done {
  what: string;
  v?: VolumeModel;
  gids: number[];
}

export interface Scenario1Options {
  seed: number;
  /** Rounds to run at most. */
  rounds: number;
  /** Stop starting rounds after this time (ms since the start). */
  durationMs?: number;
  log: (line: string) => void;
}

export interface Scenario1Summary {
  rounds: number;
  actions: Record<string, number>;
  restoresVerified: number;
  /** Commands run again after a refusal for the foreground limit. */
  busyRetries: number;
  seconds: number;
}

/** A failure of the scenario: says the seed and the round to replay it. */
export class ScenarioFailure extends Error {
  constructor(seed: number, round: number, cause: unknown) {
    super(
      `scenario1 failed in round ${round} (replay with WALB_SCENARIO1_SEED=${seed}): ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
    );
  }
}

export class Scenario1 {
  private readonly prng: Prng;
  private readonly volumes: VolumeModel[] = [];
  private deck: Action[] = [];
  private readonly counts: Record<string, number> = {};
  private restoresVerified = 0;
  private busyRetries = 0;
  /** For the checks' reads, waits and restores, in process (the actions go through walbc). */
  private readonly ctl: Controller;

  constructor(
    private readonly g: Group,
    private readonly opts: Scenario1Options,
  ) {
    this.prng = new Prng(opts.seed);
    this.ctl = new Controller(loadLayout(g.layout));
  }

  /** walbc on the group's layout; throws with its stderr unless it exits 0; returns stdout, trimmed. */
  private walbc(...args: string[]): Promise<string> {
    return this.againWhenBusy(async () => {
      const r = await run(process.execPath, [WALBC, ...args, '-l', this.g.layout], { timeoutMs: 300_000 });
      if (r.code !== 0) throw new Error(`walbc ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout.trim();
    });
  }

  /**
   * A command refused for the foreground limit (docs/servers.md §3.4: three volumes' backups, restores and diffs
   * compete for it) is run again a second later, as an operator would.
   */
  private async againWhenBusy<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof Error) || !BUSY.test(err.message) || attempt >= 60) throw err;
        this.busyRetries++;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  async run(): Promise<Scenario1Summary> {
    const started = Date.now();
    let round = 0;
    try {
      await this.setUp();
      while (
        round < this.opts.rounds &&
        (this.opts.durationMs === undefined || Date.now() - started < this.opts.durationMs)
      ) {
        round++;
        await this.round(round);
      }
      const restores = await Promise.all(this.volumes.map((v) => this.check(v, [], this.prng, true)));
      this.opts.log(`final check: ${restores.reduce((x, y) => x + y, 0)} restore(s) verified`);
    } catch (err) {
      throw new ScenarioFailure(this.opts.seed, round, err);
    } finally {
      await Promise.all(this.volumes.map((v) => v.writer.stop()));
      this.ctl.close();
    }
    return {
      rounds: round,
      actions: this.counts,
      restoresVerified: this.restoresVerified,
      busyRetries: this.busyRetries,
      seconds: Math.round((Date.now() - started) / 1000),
    };
  }

  /** Volumes v0..v2 on wdevs w0..w2 of storage s0, each fully backed up, then the writers started. */
  private async setUp(): Promise<void> {
    for (let i = 0; i < VOLUMES; i++) {
      const wdev = `w${i}`;
      if (i > 0) {
        const files = await makeWdevFiles(this.g.dir, wdev, {
          ldevBytes: 64 << 20,
          ddevBytes: this.g.size,
          pbs: 4096,
        });
        await this.g.wdevd.client.createWdev({ ...files, name: wdev });
      }
      await this.walbc('init-vol', `v${i}`, wdev);
      const c = await this.g.nbd(i);
      const v = new VolumeModel(`v${i}`, c, new Writer(this.g, c));
      await this.g.writeRandom(c, 20);
      v.add({ gid: await this.backupGid(v, 'full-backup'), hash: await this.g.deviceHash(c) });
      this.volumes.push(v);
      v.writer.start();
    }
    this.opts.log(`seed ${this.opts.seed}: ${VOLUMES} volumes fully backed up`);
  }

  private draw(): Action {
    if (this.deck.length === 0) {
      this.deck = [...DECK];
      for (let i = this.deck.length - 1; i > 0; i--) {
        const j = this.prng.int(i + 1);
        [this.deck[i], this.deck[j]] = [this.deck[j], this.deck[i]];
      }
    }
    return this.deck.pop()!;
  }

  /**
   * One round: an action drawn for each volume (in volume order, so a seed replays them), the volumes' actions run
   * at once, then the kills drawn, one after another; then every volume is checked (every FULL_CHECK_ROUNDS rounds
   * and at the end with every snapshot of known content restored).
   */
  private async round(round: number): Promise<void> {
    const t0 = Date.now();
    const plans = this.volumes.map((v) => ({
      v,
      action: this.draw(),
      rand: new Prng(this.prng.int(2 ** 32)),
    }));
    this.opts.log(`round ${round} starts: ${plans.map((p) => `${p.v.name} ${p.action}`).join(', ')}`);
    const kills = plans.filter((p) => p.action === 'kill').map((p) => p.rand);
    const done = await Promise.all(
      plans.filter((p) => p.action !== 'kill').map((p) => this.act(p.v, p.action, p.rand)),
    );
    for (const rand of kills) done.push(await this.kill(rand));
    const checkRands = this.volumes.map(() => new Prng(this.prng.int(2 ** 32)));
    const restores = await Promise.all(
      this.volumes.map((v, i) =>
        this.check(
          v,
          done.filter((d) => d.v === v).flatMap((d) => d.gids),
          checkRands[i],
          round % FULL_CHECK_ROUNDS === 0,
        ),
      ),
    );
    this.opts.log(
      `round ${round} done: ${done.map((d) => d.what).join('; ')}; ` +
        `${restores.reduce((x, y) => x + y, 0)} restore(s) verified; ` +
        `restorable ${this.volumes.map((v) => v.snaps.length).join('/')}; ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
  }

  private count(what: string): void {
    this.counts[what] = (this.counts[what] ?? 0) + 1;
  }

  /** Runs one action on a volume; returns what it did and the gids it touched (to restore in the check). */
  private async act(v: VolumeModel, action: Action, rand: Prng): Promise<Done> {
    switch (action) {
      case 'snapshot': {
        const s = await this.snapshot(v);
        this.count('snapshot');
        return { v, what: `${v.name} snapshot ${s.gid}`, gids: [s.gid] };
      }
      case 'full-backup':
      case 'hash-backup': {
        const gid = await this.backup(v, action, rand.int(2) === 0);
        this.count(action);
        return { v, what: `${v.name} ${action} ${gid}`, gids: [gid] };
      }
      case 'merge':
        return this.merge(v, rand);
      case 'apply':
        return this.apply(v, rand);
      case 'stop-start':
        return this.stopStart(v, rand);
      case 'kill':
        throw new Error('a kill is not a volume action');
    }
  }

  /** A snapshot with the volume's writes paused, so that the device's hash is its content; then writes go on. */
  private async snapshot(v: VolumeModel): Promise<Snap> {
    await v.writer.stop();
    let s: Snap;
    try {
      const gid = Number(await this.walbc('snapshot', v.name));
      s = { gid, hash: await this.g.deviceHash(v.c) };
    } finally {
      v.writer.start();
    }
    await this.ctl.waitRestorable(v.name, s.gid);
    v.add(s);
    return s;
  }

  /** The archive's restorable gids of a volume: the explicit ones, or all. */
  private async restorable(v: VolumeModel, all = false): Promise<number[]> {
    return (await this.ctl.getRestorable(v.name, 'a0', all)).map((s) => s.gid);
  }

  /**
   * A full backup as an operator starts one again: the storage stopped (force) and reset, the archive stopped and
   * reset (its history dropped), then the backup; or a hash backup: the storage stopped, then the backup onto the
   * archive's history. With `writing`, writes go on during it and its content is not known; otherwise they are
   * paused and the device's hash is recorded.
   */
  private async backup(
    v: VolumeModel,
    kind: 'full-backup' | 'hash-backup',
    writing: boolean,
  ): Promise<number> {
    if (!writing) await v.writer.stop();
    try {
      if (kind === 'full-backup') {
        await this.walbc('stop', v.name, 's0', '--mode', 'force', '--wait');
        await this.walbc('reset-vol', v.name, 's0');
        await this.walbc('stop', v.name, 'a0', '--wait');
        await this.walbc('reset-vol', v.name, 'a0');
      } else await this.walbc('stop', v.name, 's0', '--wait');
      const gid = await this.backupGid(v, kind);
      if (kind === 'full-backup') {
        v.snaps = [];
        v.hashBackupGids = [];
      } else {
        // The compared diff is not mergeable, so the snapshot it starts from, the archive's latest before the
        // backup, is explicit from now on (docs/servers.md §2.6); what it holds is whatever had been shipped.
        const last = v.snaps[v.snaps.length - 1].gid;
        for (const from of await this.restorable(v)) if (from > last && from < gid) v.add({ gid: from });
        v.hashBackupGids.push(gid);
      }
      v.add({ gid, hash: writing ? undefined : await this.g.deviceHash(v.c) });
      return gid;
    } finally {
      if (!writing) v.writer.start();
    }
  }

  /** Runs a backup through walbc until its snapshot is restorable; returns its gid. */
  private async backupGid(v: VolumeModel, kind: 'full-backup' | 'hash-backup'): Promise<number> {
    return Number((JSON.parse(await this.walbc(kind, v.name, '--wait', '--json')) as { gid: number }).gid);
  }

  /**
   * WalB's scenario merge: three snapshots in a row k0 < k1 < k2 with no hash backup's compared diff after k0 up to
   * k2 (snapshots are taken first while there is no such run); k1 is disabled and the run k0..k2 merged into one
   * diff.
   */
  private async merge(v: VolumeModel, rand: Prng): Promise<Done> {
    const taken: number[] = [];
    for (;;) {
      const runs: [number, number, number][] = [];
      for (let i = 0; i + 2 < v.snaps.length; i++) {
        const [k0, k1, k2] = [v.snaps[i].gid, v.snaps[i + 1].gid, v.snaps[i + 2].gid];
        if (!v.hashBackupGids.some((h) => h > k0 && h <= k2)) runs.push([k0, k1, k2]);
      }
      if (runs.length > 0) {
        const [k0, k1, k2] = rand.pick(runs);
        await this.walbc('disable-snapshot', v.name, String(k1));
        v.snaps = v.snaps.filter((s) => s.gid !== k1);
        await this.walbc('merge', v.name, String(k0), String(k2), '--wait');
        this.count('merge');
        const before = taken.length > 0 ? `snapshot ${taken.join(', ')}, ` : '';
        return {
          v,
          what: `${v.name} ${before}merge ${k0}..${k2} (${k1} disabled)`,
          gids: [...taken, k0, k2],
        };
      }
      taken.push((await this.snapshot(v)).gid);
    }
  }

  /**
   * Apply up to a snapshot other than the oldest (one is taken first when there is no other): the older ones leave
   * the model.
   */
  private async apply(v: VolumeModel, rand: Prng): Promise<Done> {
    const taken = v.snaps.length < 2 ? [(await this.snapshot(v)).gid] : [];
    const gid = v.snaps[1 + rand.int(v.snaps.length - 1)].gid;
    await this.walbc('apply', v.name, String(gid), '--wait');
    v.snaps = v.snaps.filter((s) => s.gid >= gid);
    v.hashBackupGids = v.hashBackupGids.filter((h) => h > gid);
    this.count('apply');
    const before = taken.length > 0 ? `snapshot ${taken[0]}, ` : '';
    return { v, what: `${v.name} ${before}apply ${gid}`, gids: [...taken, gid].filter((x) => x >= gid) };
  }

  /** One server stops the volume (a mode of its own drawn), stays stopped a moment while writes go on, starts it. */
  private async stopStart(v: VolumeModel, rand: Prng): Promise<Done> {
    const server = rand.pick(Object.keys(SERVERS));
    const mode = rand.pick(SERVERS[server]);
    await this.walbc('stop', v.name, server, '--mode', mode, '--wait');
    await new Promise((r) => setTimeout(r, 300 + rand.int(1500)));
    await this.walbc('start', v.name, server);
    await this.walbc('kick-all');
    this.count('stop-start');
    return { v, what: `${v.name} stop ${mode}/start on ${server}`, gids: [] };
  }

  /** SIGKILL of a whole server (every volume's work on it cut), restarted on its data at once. */
  private async kill(rand: Prng): Promise<Done> {
    const server = rand.pick(Object.keys(SERVERS));
    const proc = { s: this.g.storages, p: this.g.proxies, a: this.g.archives }[
      server[0] as 's' | 'p' | 'a'
    ][0];
    await proc.kill();
    await proc.start();
    await this.walbc('kick-all');
    this.count('kill');
    return { what: `SIGKILL and restart of ${server}`, gids: [] };
  }

  /**
   * The archive lists exactly the model's snapshots as restorable (and its newest one); the ones the round touched
   * and one drawn at random, or with `all` every one whose content is known, restore to their content. Returns how
   * many restores were verified.
   */
  private async check(v: VolumeModel, touched: number[], rand: Prng, all: boolean): Promise<number> {
    const listed = await this.restorable(v);
    const expected = v.snaps.map((s) => s.gid);
    // The archive lists its newest snapshot too (docs/servers.md §2.6): the end of the last diff received.
    const newest = listed[listed.length - 1];
    if (newest > expected[expected.length - 1]) expected.push(newest);
    if (JSON.stringify(listed) !== JSON.stringify(expected))
      throw new Error(
        `${v.name}: restorable ${JSON.stringify(listed)}, expected ${JSON.stringify(expected)}`,
      );
    const known = v.snaps.filter((s) => s.hash !== undefined);
    const toRestore = new Set(
      all ? known.map((s) => s.gid) : touched.filter((gid) => known.some((s) => s.gid === gid)),
    );
    if (!all && known.length > 0) toRestore.add(rand.pick(known).gid);
    for (const gid of toRestore) {
      const want = known.find((s) => s.gid === gid)!.hash;
      const got = await this.restoredHash(v, gid);
      if (got !== want) throw new Error(`${v.name}: gid ${gid} restores to ${got}, the device was ${want}`);
      this.restoresVerified++;
    }
    return toRestore.size;
  }

  /** Restores a snapshot (in process: a check, not an action), hashes the image and deletes it. */
  private async restoredHash(v: VolumeModel, gid: number): Promise<string> {
    const op = await this.againWhenBusy(() => this.ctl.restore(v.name, gid, { wait: true }));
    const hash = await fileHash(op.result);
    await this.ctl.delRestored(v.name, gid);
    return hash;
  }
}

async function fileHash(file: string): Promise<string> {
  const h = crypto.createHash('sha1');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}
