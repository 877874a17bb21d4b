// Crash safety of walb-wdevd: writers pipeline writes, trims and flushes to two wdevs (pbs 512 and 4096) while the
// test kills the daemon with SIGKILL at a random moment; after a restart every write acknowledged before the last
// completed flush (or acknowledged with FUA) must read back, and the logs in the ldev must hold exactly what
// reached the device: redoing them onto the image of the previous round gives the image of this round.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../src/native';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const ROUNDS = Number(process.env.WALB_CRASH_ROUNDS ?? 50);
const SECTOR = 512;
const DDEV_BYTES = 8 << 20;
const SECTORS = DDEV_BYTES / SECTOR;
const LDEV_BYTES = 4 << 20;
const ROUND_BUDGET = 1 << 20;

function sectorBytes(tag: number, sector: number, out: Buffer, at: number): void {
  out.fill((tag * 31 + sector) & 0xff, at, at + SECTOR);
  out.writeUInt32LE(tag, at);
  out.writeUInt32LE(sector, at + 4);
}

/** The tag a sector holds: 0 for all zeros, else the writer's tag if the whole sector is intact, else -1. */
function tagOf(buf: Buffer, at: number, sector: number): number {
  const tag = buf.readUInt32LE(at);
  if (tag === 0) return buf.subarray(at, at + SECTOR).every((b) => b === 0) ? 0 : -1;
  const expect = Buffer.alloc(SECTOR);
  sectorBytes(tag, sector, expect, 0);
  return expect.equals(buf.subarray(at, at + SECTOR)) ? tag : -1;
}

/** What each sector may hold after a crash: its durable tag, or any tag written since that became durable. */
class Model {
  durable = new Uint32Array(SECTORS);
  since = new Map<number, number[]>();

  written(sector: number, tag: number): void {
    const l = this.since.get(sector);
    if (l) l.push(tag);
    else this.since.set(sector, [tag]);
  }
  allows(sector: number, tag: number): boolean {
    return this.durable[sector] === tag || (this.since.get(sector)?.includes(tag) ?? false);
  }
}

let nextTag = 1;
const rand = (n: number) => Math.floor(Math.random() * n);

/** Writes phases of non-overlapping requests, each phase followed by a flush, until the connection dies. */
async function writer(c: RawClient, model: Model, stop: { now: boolean }): Promise<number> {
  let phases = 0;
  let bytes = 0;
  try {
    // A budget per round keeps the logs of a round within the ring, so that all of them can be checked.
    while (!stop.now && bytes < ROUND_BUDGET) {
      const used = new Set<number>();
      const reqs: { handle: number; first: number; n: number; tag: number; fua: boolean }[] = [];
      for (let i = 0; i < 16; i++) {
        const n = 1 + rand(rand(4) === 0 ? 256 : 16);
        const first = rand(SECTORS - n);
        let clash = false;
        for (let s = first; s < first + n && !clash; s++) clash = used.has(s);
        if (clash) continue;
        for (let s = first; s < first + n; s++) used.add(s);
        const trim = rand(10) === 0;
        const tag = trim ? 0 : nextTag++;
        const fua = rand(5) === 0;
        const handle = reqs.length + 1;
        for (let s = first; s < first + n; s++) model.written(s, tag);
        if (trim) {
          c.request(P.NBD_CMD_TRIM, handle, first * SECTOR, n * SECTOR, fua ? P.NBD_CMD_FLAG_FUA : 0);
        } else {
          const data = Buffer.alloc(n * SECTOR);
          for (let s = 0; s < n; s++) sectorBytes(tag, first + s, data, s * SECTOR);
          c.request(P.NBD_CMD_WRITE, handle, first * SECTOR, data.length, fua ? P.NBD_CMD_FLAG_FUA : 0, data);
        }
        reqs.push({ handle, first, n, tag, fua });
        bytes += n * SECTOR;
      }
      const done: typeof reqs = [];
      for (let i = 0; i < reqs.length; i++) {
        const r = await c.reply();
        if (r.error !== 0) throw new Error(`request ${r.handle} failed with ${r.error}`);
        const q = reqs[r.handle - 1];
        done.push(q);
        if (q.fua) for (let s = q.first; s < q.first + q.n; s++) model.durable[s] = q.tag;
      }
      c.request(P.NBD_CMD_FLUSH, 1000, 0, 0);
      const f = await c.reply();
      if (f.error !== 0) throw new Error(`flush failed with ${f.error}`);
      // Everything acknowledged before the flush was sent is durable now.
      for (const q of done) for (let s = q.first; s < q.first + q.n; s++) model.durable[s] = q.tag;
      phases++;
    }
  } catch (err) {
    if (!stop.now && !c.isClosed) throw err;
  }
  return phases;
}

async function readAll(c: RawClient): Promise<Buffer> {
  const out = Buffer.alloc(DDEV_BYTES);
  const chunk = 1 << 20;
  for (let off = 0; off < DDEV_BYTES; off += chunk) {
    const r = await c.readAt(1, off, chunk);
    if (r.error !== 0) throw new Error(`read at ${off} failed with ${r.error}`);
    r.data.copy(out, off);
  }
  return out;
}

test('no write acknowledged before a completed flush is lost when walb-wdevd is killed, and the logs hold every write', async (t) => {
  const dir = makeTempDir('wdevd-crash');
  const daemon = new Wdevd(dir);
  try {
    await daemon.start();
    const devs = [];
    for (const pbs of [512, 4096]) {
      const name = `crash${pbs}`;
      // A small ring (4 MiB) makes the writers wrap it every few rounds.
      const files = await makeWdevFiles(dir, name, { ldevBytes: LDEV_BYTES, ddevBytes: DDEV_BYTES, pbs });
      await daemon.client.createWdev({ ...files, name, options: { checkpointIntervalMs: 200 } });
      devs.push({ name, ...files, model: new Model(), image: path.join(dir, `${name}.prev`) });
      fs.writeFileSync(path.join(dir, `${name}.prev`), Buffer.alloc(DDEV_BYTES));
    }
    let totalPhases = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const stop = { now: false };
      const clients = await Promise.all(devs.map((d) => RawClient.go(daemon.nbdSocket, d.name)));
      const writers = devs.map((d, i) => writer(clients[i].c, d.model, stop));
      await new Promise((r) => setTimeout(r, 20 + rand(300)));
      stop.now = true;
      await daemon.kill();
      totalPhases += (await Promise.all(writers)).reduce((a, b) => a + b, 0);
      for (const c of clients) c.c.destroy();

      await daemon.start();
      for (const d of devs) {
        const st = await daemon.client.status(d.name);
        t.false(st.failed, `${d.name} failed after restart: ${st.failure}`);
        t.false(st.overflow, `${d.name} overflowed`);
        const { c } = await RawClient.go(daemon.nbdSocket, d.name);
        const now = await readAll(c);
        c.disconnect();
        c.destroy();
        for (let s = 0; s < SECTORS; s++) {
          const tag = tagOf(now, s * SECTOR, s);
          if (tag < 0 || !d.model.allows(s, tag)) {
            t.fail(
              `round ${round}, ${d.name}: sector ${s} holds ${tag < 0 ? 'torn data' : `tag ${tag}`}; durable tag ${d.model.durable[s]}, written since: ${d.model.since.get(s)?.join(',') ?? '-'}`,
            );
            return;
          }
          d.model.durable[s] = tag;
        }
        d.model.since.clear();

        // The logs since the previous round, redone onto the previous image, give this image.
        const wlog = path.join(dir, `${d.name}.wlog`);
        const ex = await native.ldevExtract(d.ldev, wlog, { beginLsid: st.lsids!.oldest });
        t.is(ex.endLsid, st.lsids!.latest, `${d.name}: valid logs end at the latest lsid`);
        await native.wlogVerify(wlog);
        await native.wlogRedo(wlog, d.image, { discard: 'zero' });
        const redone = fs.readFileSync(d.image);
        if (!redone.equals(now)) {
          t.fail(`round ${round}, ${d.name}: redo of the extracted logs differs from the device`);
          return;
        }
        // Act as the storage server: the logs are extracted, free them.
        const cp = await daemon.client.takeCheckpoint(d.name);
        await daemon.client.setOldestLsid(d.name, cp.lsids!.prevWritten);
      }
    }
    t.true(totalPhases > ROUNDS, `writers completed ${totalPhases} flushed phases over ${ROUNDS} rounds`);
    t.log(`${ROUNDS} crash rounds, ${totalPhases} flushed phases, ${nextTag - 1} writes`);
  } finally {
    await daemon.cleanup();
    removeDir(dir);
  }
});
