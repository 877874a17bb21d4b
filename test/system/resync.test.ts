// Resync (docs/servers.md §7.7.1) between two running walb-archive processes: a0 holds the storage's full backup
// and diffs; a1 holds the same volume with another lineage (its own full backup of other bytes, diffs, a restored
// image). The source side runs here, in the test, on a0's volume opened from its data directory, as a0's
// replication runs it: a1 then holds a0's base image byte for byte and its lineage, without diffs. A resync cut
// half-way (cancelled, or a1 killed) leaves a1 SyncReady with nothing restorable, and a rerun finishes it.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ArchiveVolumes } from '../../src/archive/context';
import { resyncStep } from '../../src/archive/resync';
import { parseDiffFileName } from '../../src/common/meta';
import { fileChunks, runTransfer } from '../../src/common/transfer';
import { Group } from '../group-fixture';
import { archiveClient } from '../system-harness';

/** Two hash batches of the destination (16 MiB each), so that a cut after the first one is half-way. */
const SIZE = 32 << 20;
const quiet = () => undefined;

function sha1(file: string): string {
  return crypto.createHash('sha1').update(fs.readFileSync(file)).digest('hex');
}

function baseImage(dataDir: string): string {
  return path.join(dataDir, 'vol', 'base.img');
}

/**
 * A group whose a0 has a full backup and a snapshot's diffs of `vol`, and whose a1 has another lineage of it: a
 * full backup of a0's base image with 1 MiB of other bytes in each quarter, a0's diffs, and gid `g1` restored.
 */
async function twoLineages(t: ExecutionContext, name: string) {
  const g = await Group.start(t, name, { archives: 2, ddevBytes: SIZE });
  try {
    const { ok } = g;
    await ok('init-vol', 'vol', 'w0');
    // Only the test feeds a1 (init-vol registers the primary alone on the proxy).
    await ok('call', 'a1', 'InitVol', '{"volume":"vol"}');
    const c = await g.nbd();
    await g.writeRandom(c, 40, SIZE);
    await ok('full-backup', 'vol', '--wait');
    await g.writeRandom(c, 40, SIZE);
    const g1 = Number(await ok('snapshot', 'vol', '--wait'));

    const a0 = archiveClient(g.archives[0].address);
    const a1 = archiveClient(g.archives[1].address);
    const source = await a0.Status({ volume: 'vol' });
    const image = fs.readFileSync(baseImage(g.archives[0].dataDir));
    for (let q = 0; q < 4; q++) crypto.randomFillSync(image, q * (SIZE / 4) + (1 << 20), 1 << 20);
    const full = await runTransfer(
      a1.FullSync(),
      { header: { volume: 'vol', size: SIZE / 512, storageUuid: source.storageUuid, timestamp: 1 } },
      async function* () {
        for (let offset = 0; offset < SIZE; offset += 1 << 20)
          yield { data: { offset, data: image.subarray(offset, offset + (1 << 20)) } };
      },
      { end: { snapshot: source.base } },
    );
    t.true(full.ok, 'a1 takes its own full backup');
    const volDir = path.join(g.archives[0].dataDir, 'vol');
    const wdiffs = fs
      .readdirSync(volDir)
      .map((n) => parseDiffFileName(n))
      .filter((d) => d !== undefined)
      .sort((x, y) => x.snapB.gidB - y.snapB.gidB);
    t.true(wdiffs.length > 0, 'a0 has diffs');
    for (const d of wdiffs) {
      const file = fs.readdirSync(volDir).find((n) => parseDiffFileName(n)?.snapE.gidB === d.snapE.gidB)!;
      const sent = await runTransfer(
        a1.SendWdiff(),
        {
          header: {
            volume: 'vol',
            storageUuid: source.storageUuid,
            size: SIZE / 512,
            diff: { ...d, mergeable: d.isMergeable, compDiff: d.isCompDiff },
          },
        },
        () => fileChunks(path.join(volDir, file), (data) => ({ data })),
        { end: {} },
      );
      t.true(sent.ok, `a1 takes diff ${file}`);
    }
    await ok('restore', 'vol', String(g1), '--wait', '--archive', 'a1');
    const before = await a1.Status({ volume: 'vol' });
    t.not(before.archiveUuid, source.archiveUuid, 'another lineage');
    t.true(before.diffs > 0);
    t.deepEqual(before.restored.map(Number), [g1]);
    t.not(sha1(baseImage(g.archives[1].dataDir)), sha1(baseImage(g.archives[0].dataDir)));
    return { g, a0, a1 };
  } catch (err) {
    await g.cleanup();
    throw err;
  }
}

/** The resync step of a0's `vol` onto a1, run as a0's replication runs it (a0 idle meanwhile). */
async function resyncA1FromA0(
  g: Group,
  op: { signal?: AbortSignal; progress?: (done: number, total?: number) => void } = {},
): Promise<void> {
  const volumes = new ArchiveVolumes(g.archives[0].dataDir);
  await volumes.load();
  const destination = archiveClient(g.archives[1].address);
  try {
    const result = await resyncStep({ log: quiet }, volumes.store(volumes.get('vol')), destination, {
      progress: op.progress ?? quiet,
      signal: op.signal ?? new AbortController().signal,
    });
    if (!result.ok) throw new Error(`a1 refused the resync: ${result.reason} ${result.message}`);
  } finally {
    destination.close();
  }
}

/** The bytes a1 wrote into its base image in its last resync, from its log. */
function writtenBytes(stderr: string): number {
  const lines = stderr.split('\n').filter((l) => l.includes('"event":"resync-done"'));
  if (!lines.length) throw new Error('no resync-done in the archive log');
  return (JSON.parse(lines[lines.length - 1]) as { writtenBytes: number }).writtenBytes;
}

async function checkResynced(
  t: ExecutionContext,
  g: Group,
  a0: ReturnType<typeof archiveClient>,
  a1: ReturnType<typeof archiveClient>,
) {
  const source = await a0.Status({ volume: 'vol' });
  const after = await a1.Status({ volume: 'vol' });
  t.is(after.state?.state, 'Archived');
  t.is(after.archiveUuid, source.archiveUuid, 'a1 adopts a0 lineage');
  t.is(after.storageUuid, source.storageUuid);
  t.deepEqual(after.base, source.base);
  t.is(Number(after.size), Number(source.size));
  t.is(after.diffs, 0, 'its diffs are gone');
  t.deepEqual(after.restored, [], 'its restored images are gone');
  t.is(
    sha1(baseImage(g.archives[1].dataDir)),
    sha1(baseImage(g.archives[0].dataDir)),
    'base.img bytes equal a0 base.img',
  );
}

test.serial(
  'resync step: a1 with another lineage gets a0 base image byte for byte and its lineage, its diffs and restored images dropped, only the differing chunks sent',
  async (t) => {
    const { g, a0, a1 } = await twoLineages(t, 'resync-n14');
    try {
      await resyncA1FromA0(g);
      await checkResynced(t, g, a0, a1);
      // 4 MiB of the 32 MiB differed.
      const written = writtenBytes(g.archives[1].stderr);
      t.true(written >= 4 << 20 && written <= 5 << 20, `wrote ${written} bytes`);
      // Equal images: a second resync sends nothing.
      await resyncA1FromA0(g);
      t.is(writtenBytes(g.archives[1].stderr), 0);
      await checkResynced(t, g, a0, a1);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'a resync cut half-way — cancelled at the source, or the destination killed — leaves the destination SyncReady with nothing restorable, and a rerun finishes it byte for byte',
  async (t) => {
    const { g, a0, a1 } = await twoLineages(t, 'resync-e6');
    try {
      const { ok } = g;
      const cancel = new AbortController();
      await t.throwsAsync(
        resyncA1FromA0(g, {
          signal: cancel.signal,
          progress: (done) => {
            if (done < SIZE) cancel.abort();
          },
        }),
        { code: 'CANCELLED' } as object,
      );
      t.is(await ok('get-state', 'vol', 'a1'), 'SyncReady');
      t.deepEqual(await g.restorable('vol', 'a1'), [], 'nothing restorable from a partly fixed image');
      t.is((await a1.Status({ volume: 'vol' })).diffs, 0);

      let killed: Promise<void> | undefined;
      await t.throwsAsync(
        resyncA1FromA0(g, {
          progress: (done) => {
            if (done < SIZE) killed ??= g.archives[1].kill();
          },
        }),
      );
      await killed;
      await g.archives[1].start();
      t.is(await ok('get-state', 'vol', 'a1'), 'SyncReady', 'meta.json never claimed Archived');
      t.deepEqual(await g.restorable('vol', 'a1'), []);

      await resyncA1FromA0(g);
      await checkResynced(t, g, a0, archiveClient(g.archives[1].address));
    } finally {
      await g.cleanup();
    }
  },
);
