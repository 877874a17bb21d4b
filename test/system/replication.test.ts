// Replication between archives (docs/servers.md §7.7, §12 n7, n8, n9, e14, e15, e16): a backup group with two
// archives, the second one not registered on the proxy, filled only by `walbc replicate a0 a1`; writes through NBD;
// each check byte for byte: the same gid restored on both archives hashes as the device did.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Group } from '../group-fixture';
import type { RawClient } from '../nbd-client';
import { Relay } from '../relay';
import { operationRunningUntil, walbcOn } from '../system-harness';
import { waitUntil } from '../waiting';

const MiB = 1 << 20;

interface Op {
  id: string;
  state: string;
  done: number;
  total: number;
  result: string;
}

/** Writes the whole device with random data (so that a full copy has every bulk to send), then flushes. */
async function fill(g: Group, c: RawClient): Promise<void> {
  await g.writeRandom(c, 1);
  for (let off = 0, h = 5000; off < g.size; off += MiB, h++)
    if ((await c.writeAt(h, off, crypto.randomBytes(MiB))) !== 0) throw new Error('write failed');
  await g.writeRandom(c, 1);
}

/** The restorable list of an archive as get-restorable shows it (explicit snapshots, the oldest and the latest). */
async function restorableList(g: Group, archive: string): Promise<number[]> {
  const list = JSON.parse(await g.ok('get-restorable', 'vol', '--json', '--archive', archive)) as {
    gid: number;
  }[];
  return list.map((s) => Number(s.gid));
}

async function stateOf(g: Group, server: string): Promise<string> {
  return g.ok('get-state', 'vol', server);
}

/** `gid` restored on both archives hashes as the device did when it was taken. */
async function sameOnBoth(t: ExecutionContext, g: Group, gid: number, device: string): Promise<void> {
  t.is(await g.restoredHash('vol', gid, 'a0'), device, `gid ${gid} on a0`);
  t.is(await g.restoredHash('vol', gid, 'a1'), device, `gid ${gid} on a1`);
}

/** Starts a replication a0 → a1 through `walbc` and returns its operation. */
async function startReplicate(ok: (...args: string[]) => Promise<string>, ...extra: string[]): Promise<Op> {
  return (JSON.parse(await ok('replicate', 'vol', 'a0', 'a1', '--json', ...extra)) as { operation: Op })
    .operation;
}

/** Waits until the replication `id` on a0 has sent `bytes` more than when first seen (and still runs). */
function sendsMore(g: Group, id: string, bytes: number): Promise<void> {
  let first: number | undefined;
  return operationRunningUntil(
    g.archives[0].address,
    id,
    ({ done }) => {
      first ??= done;
      return done >= first + bytes;
    },
    `replication ${id} sending ${bytes} more bytes`,
  );
}

/** The compared diffs the destination took (repl-hash-received) since its last start. */
function hashDiffsReceived(g: Group): string[] {
  return [...g.archives[1].stderr.matchAll(/"event":"repl-hash-received"[^\n]*"diff":"([^"]+)"/g)].map(
    (m) => m[1],
  );
}

/** Walbc's layout with a1 behind a relay of `bytesPerSec` the test can cut, and walbc on it. */
async function slowA1(t: ExecutionContext, g: Group, bytesPerSec: number) {
  const relay = new Relay({ host: '127.0.0.1', port: g.archives[1].port }, bytesPerSec);
  await relay.open();
  const layout = JSON.parse(fs.readFileSync(g.layout, 'utf8')) as {
    archives: { id: string; address: string }[];
  };
  layout.archives[1].address = relay.address;
  const slowLayout = path.join(g.dir, 'slow-layout.json');
  fs.writeFileSync(slowLayout, JSON.stringify(layout));
  return { relay, slow: walbcOn(t, slowLayout) };
}

/** The resume offsets the destination logged (full-repl-resumed) since its last start. */
function resumeOffsets(g: Group): number[] {
  return [...g.archives[1].stderr.matchAll(/"event":"full-repl-resumed"[^\n]*"offset":(\d+)/g)].map((m) =>
    Number(m[1]),
  );
}

test.serial(
  'n7, n8: a full replication, then diff steps (verbatim with --dont-merge, else merged) give a1 the same restorable list and images',
  async (t) => {
    // The stream path (no bulk port); e14 takes the bulk path.
    const g = await Group.start(t, 'repl-n7', { archives: 2, archiveConfig: { bulkListen: 'off' } });
    try {
      await g.ok('init-vol', 'vol', 'w0');
      t.is(await stateOf(g, 'a1'), 'Clear', 'init-vol leaves the secondary archive alone');
      t.notRegex(await g.ok('archive-info', 'list', 'vol'), /\ba1\b/, 'the proxy sends to the primary only');
      const c = await g.nbd();
      await g.writeRandom(c, 60);
      await g.ok('full-backup', 'vol', '--wait');
      await g.writeRandom(c, 30);
      const gid1 = Number(await g.ok('snapshot', 'vol', '--wait'));
      const device1 = await g.deviceHash(c);

      // n7: a1 is Clear: walbc inits it, the source sends its base image, then the diffs up to its latest.
      const r = JSON.parse(await g.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        operation: Op;
        gid: number;
      };
      t.is(r.gid, gid1, "the result is the destination's latest gid");
      t.true(Number(r.operation.done) >= g.size, 'progress counts the bytes sent');
      t.regex(g.archives[1].stderr, /"event":"full-repl-done"[^\n]*"path":"stream"/);
      t.is(await stateOf(g, 'a1'), 'Archived');
      t.deepEqual(await restorableList(g, 'a1'), await restorableList(g, 'a0'));
      await sameOnBoth(t, g, gid1, device1);

      // n8: more writes and two snapshots; the first one replicated one diff at a time, then the rest merged.
      await g.writeRandom(c, 30);
      const gid2 = Number(await g.ok('snapshot', 'vol', '--wait'));
      const device2 = await g.deviceHash(c);
      await g.writeRandom(c, 30);
      const gid3 = Number(await g.ok('snapshot', 'vol', '--wait'));
      const device3 = await g.deviceHash(c);
      const fullsBefore = g.archives[1].stderr.match(/"event":"full-repl-done"/g)!.length;
      // The files of each diff step the source sent, in order.
      const stepFiles = () =>
        [...g.archives[0].stderr.matchAll(/"event":"repl-diff-sent"[^\n]*"files":(\d+)/g)].map((m) =>
          Number(m[1]),
        );
      const stepsBefore = stepFiles().length;
      const first = JSON.parse(
        await g.ok('replicate', 'vol', 'a0', 'a1', '--gid', String(gid2), '--dont-merge', '--wait', '--json'),
      ) as { gid: number };
      t.is(first.gid, gid2, 'stops at the asked gid');
      const verbatim = stepFiles().slice(stepsBefore);
      t.true(verbatim.length >= 1);
      t.deepEqual(
        verbatim,
        verbatim.map(() => 1),
        'with --dont-merge each step is one file as it is',
      );
      const second = JSON.parse(await g.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        gid: number;
      };
      t.is(second.gid, gid3);
      t.is(
        g.archives[1].stderr.match(/"event":"full-repl-done"/g)!.length,
        fullsBefore,
        'no second full copy',
      );
      t.regex(g.archives[1].stderr, /"event":"repl-diff-received"/);
      t.true(stepFiles().length > stepsBefore + verbatim.length, 'the second run sent diff steps');
      t.deepEqual(await restorableList(g, 'a1'), await restorableList(g, 'a0'));
      await sameOnBoth(t, g, gid2, device2);
      await sameOnBoth(t, g, gid3, device3);
      // Nothing left to send: a rerun is done at once with the same gid.
      t.is(
        (JSON.parse(await g.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as { gid: number }).gid,
        gid3,
      );
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'e14: a full replication cut half-way (cancelled, source killed, destination killed) leaves a1 SyncReady; the rerun resumes and equals',
  async (t) => {
    // 1 MiB/s and an fsync every MiB: a 32 MiB copy takes 32 s and saves its resume point as it goes. Each run
    // below is cut after 3 MiB more, so that the three cuts land before the end even when each walbc (the start,
    // the cancel) takes seconds on a loaded machine.
    const g = await Group.start(t, 'repl-e14', {
      archives: 2,
      ddevBytes: 32 * MiB,
      archiveConfig: { replicateBytesPerSec: MiB, fsyncIntervalMb: 1 },
    });
    try {
      await g.ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await fill(g, c);
      const full = JSON.parse(await g.ok('full-backup', 'vol', '--wait', '--json')) as { gid: number };
      const device = await g.deviceHash(c);

      // Cancelled on the source.
      const cancelled = await startReplicate(g.ok);
      await sendsMore(g, cancelled.id, 3 * MiB);
      await g.ok('cancel', 'a0', cancelled.id);
      const watched = await g.walbc('watch', 'a0', cancelled.id, '--json');
      t.regex(watched.stdout, /"state": "cancelled"/);
      await waitUntil(async () => (await stateOf(g, 'a1')) === 'SyncReady', 'a1 SyncReady after the cancel');

      // The source killed: it comes back Archived with no replication; the destination rolls back.
      const dying = await startReplicate(g.ok);
      await sendsMore(g, dying.id, 3 * MiB);
      t.true(
        resumeOffsets(g).some((o) => o > 0),
        'the second run resumed where the cancelled one stopped',
      );
      await g.archives[0].kill();
      await g.archives[0].start();
      t.is(await stateOf(g, 'a0'), 'Archived');
      await waitUntil(
        async () => (await stateOf(g, 'a1')) === 'SyncReady',
        'a1 SyncReady after the source died',
      );

      // The destination killed: it restarts SyncReady.
      const killed = await startReplicate(g.ok);
      await sendsMore(g, killed.id, 3 * MiB);
      await g.archives[1].kill();
      const failed = await g.walbc('watch', 'a0', killed.id, '--json');
      t.is(failed.code, 1);
      t.regex(failed.stdout, /"state": "failed"/);
      await g.archives[1].start();
      t.is(await stateOf(g, 'a1'), 'SyncReady');

      const done = JSON.parse(await g.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        gid: number;
      };
      const offsets = resumeOffsets(g);
      t.is(offsets.length, 1);
      t.true(offsets[0] > 0 && offsets[0] < g.size, `resumed at ${offsets[0]}`);
      t.is(done.gid, full.gid);
      t.regex(g.archives[1].stderr, /"event":"full-repl-done"[^\n]*"path":"bulk"/, 'through the bulk port');
      t.deepEqual(await restorableList(g, 'a1'), await restorableList(g, 'a0'));
      await sameOnBoth(t, g, full.gid, device);
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  "e16: a diff step cut (link down, destination killed) leaves a1's latest as it was; the rerun brings it level",
  async (t) => {
    const g = await Group.start(t, 'repl-e16', { archives: 2 });
    // walbc with a layout in which a1 is behind a slow relay (2 MiB/s) the test cuts.
    const { relay, slow } = await slowA1(t, g, 2 * MiB);
    try {
      await g.ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 20);
      await g.ok('full-backup', 'vol', '--wait');
      const base = JSON.parse(await g.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        gid: number;
      };
      // About 12 MiB of new data: a diff step of 6 s through the relay.
      await fill(g, c);
      const gid = Number(await g.ok('snapshot', 'vol', '--wait'));
      const device = await g.deviceHash(c);
      const latestOfA1 = async () => Math.max(...(await g.restorable('vol', 'a1')));

      for (const cut of ['link', 'destination'] as const) {
        const passed = relay.forwarded;
        const op = await startReplicate(slow.ok);
        await waitUntil(async () => (await stateOf(g, 'a1')) === 'ReplSyncAsServer', 'a1 receiving the diff');
        // The step's bytes are handed to gRPC at once (its window), so its progress says little; the relay says
        // what reached a1. A cut after 2 of its ~12 MiB lands in the middle; the step failing proves it did.
        await waitUntil(
          () => relay.forwarded - passed >= 2 * MiB,
          () => `2 MiB of the diff through the relay (${cut})`,
        );
        if (cut === 'link') {
          await relay.cut();
          await relay.open();
        } else {
          await g.archives[1].kill();
          await g.archives[1].start();
        }
        const failed = await g.walbc('watch', 'a0', op.id, '--json');
        t.regex(failed.stdout, /"state": "failed"/, cut);
        await waitUntil(
          async () => (await stateOf(g, 'a1')) === 'Archived',
          `a1 Archived after the ${cut} cut`,
        );
        t.is(await latestOfA1(), base.gid, `the ${cut} cut leaves a1's latest as it was`);
      }

      const done = JSON.parse(await slow.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        gid: number;
      };
      t.is(done.gid, gid);
      t.deepEqual(await restorableList(g, 'a1'), await restorableList(g, 'a0'));
      await sameOnBoth(t, g, gid, device);
    } finally {
      await relay.cut();
      await g.cleanup();
    }
  },
);

test.serial(
  'n9: after the source applied past a1, replicate takes a hash step sending only the chunks that differ, then diff steps; both restore equal',
  async (t) => {
    const g = await Group.start(t, 'repl-n9', { archives: 2 });
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 60);
      await ok('full-backup', 'vol', '--wait');
      await g.writeRandom(c, 30);
      const gid1 = Number(await ok('snapshot', 'vol', '--wait'));
      const device1 = await g.deviceHash(c);
      t.is(
        (JSON.parse(await ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as { gid: number }).gid,
        gid1,
      );

      // a0 applies past a1's latest: only one restorable snapshot remains, and no diff of a0 starts at gid1.
      await g.writeRandom(c, 30);
      const gid2 = Number(await ok('snapshot', 'vol', '--wait'));
      const device2 = await g.deviceHash(c);
      t.is(await ok('apply', 'vol', String(gid2), '--archive', 'a0', '--wait'), `applied up to gid ${gid2}`);
      t.deepEqual(await g.restorable('vol', 'a0'), [gid2], 'only the applied snapshot remains on a0');
      await g.writeRandom(c, 30);
      const gid3 = Number(await ok('snapshot', 'vol', '--wait'));
      const device3 = await g.deviceHash(c);

      const r = JSON.parse(await ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as { gid: number };
      t.is(r.gid, gid3);
      t.deepEqual(hashDiffsReceived(g), [`|${gid1}|-->|${gid2}|`], 'one hash step, to the base of a0');
      const sent = [...g.archives[0].stderr.matchAll(/"event":"repl-hash-sent"[^\n]*"sentBytes":(\d+)/g)].map(
        (m) => Number(m[1]),
      );
      t.is(sent.length, 1);
      t.true(
        sent[0] > 0 && sent[0] < g.size / 2,
        `only the chunks that differ: ${sent[0]} of ${g.size} bytes`,
      );
      t.regex(g.archives[1].stderr, /"event":"repl-diff-received"/, 'then a diff step');
      t.is(await stateOf(g, 'a1'), 'Archived');
      t.deepEqual(
        (await restorableList(g, 'a1')).filter((gid) => gid >= gid2),
        await restorableList(g, 'a0'),
        "from a0's base on, a1 lists what a0 does",
      );
      t.true((await g.restorable('vol', 'a1')).includes(gid1), 'a1 keeps its older snapshots');
      await sameOnBoth(t, g, gid2, device2);
      await sameOnBoth(t, g, gid3, device3);
      t.is(
        await g.restoredHash('vol', gid1, 'a1'),
        device1,
        'the snapshot before the hash step restores as before',
      );
    } finally {
      await g.cleanup();
    }
  },
);

test.serial(
  'e15: a hash step cut (link down, destination killed, source killed) leaves a1 Archived at its latest; the rerun takes the same compared diff and equals',
  async (t) => {
    const g = await Group.start(t, 'repl-e15', { archives: 2 });
    // The hash step's chunks (the whole 16 MiB device rewritten) take 16 s through a 1 MiB/s relay: time enough
    // for the cuts below to land half-way on a busy machine.
    const { relay, slow } = await slowA1(t, g, MiB);
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 20);
      await ok('full-backup', 'vol', '--wait');
      const base = JSON.parse(await ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        gid: number;
      };
      await fill(g, c);
      const gid2 = Number(await ok('snapshot', 'vol', '--wait'));
      const device2 = await g.deviceHash(c);
      await ok('apply', 'vol', String(gid2), '--archive', 'a0', '--wait');
      await g.writeRandom(c, 20);
      const gid3 = Number(await ok('snapshot', 'vol', '--wait'));
      const device3 = await g.deviceHash(c);
      const listOfA1 = await g.restorable('vol', 'a1');
      const tempFiles = () =>
        fs
          .readdirSync(path.join(g.archives[1].dataDir, 'vol'))
          .filter((f) => f.endsWith('.wdiff') && !/^\d{14}-/.test(f));

      for (const cut of ['link', 'destination', 'source'] as const) {
        const passed = relay.forwarded;
        const op = await startReplicate(slow.ok);
        await waitUntil(async () => (await stateOf(g, 'a1')) === 'ReplSyncAsServer', `a1 comparing (${cut})`);
        // A cut after 1 MiB of the step's ~16 MiB has gone through the relay lands early in it, whatever the
        // machine's speed; the step failing proves it did.
        await waitUntil(
          () => relay.forwarded - passed >= MiB,
          () => `1 MiB of the hash step through the relay (${cut})`,
        );
        if (cut === 'link') {
          await relay.cut();
          await relay.open();
        } else if (cut === 'destination') {
          await g.archives[1].kill();
          await g.archives[1].start();
        } else {
          await g.archives[0].kill();
          await g.archives[0].start();
          t.is(await stateOf(g, 'a0'), 'Archived', 'the source comes back with no replication running');
        }
        if (cut !== 'source') {
          const failed = await g.walbc('watch', 'a0', op.id, '--json');
          t.regex(failed.stdout, /"state": "failed"/, cut);
        }
        await waitUntil(
          async () => (await stateOf(g, 'a1')) === 'Archived',
          `a1 Archived after the ${cut} cut`,
        );
        t.deepEqual(
          await g.restorable('vol', 'a1'),
          listOfA1,
          `the ${cut} cut leaves a1's snapshots as they were`,
        );
        t.deepEqual(hashDiffsReceived(g), [], `no compared diff taken (${cut})`);
        t.deepEqual(tempFiles(), [], `the partial diff is gone (${cut})`);
      }

      const done = JSON.parse(await slow.ok('replicate', 'vol', 'a0', 'a1', '--wait', '--json')) as {
        gid: number;
      };
      t.is(done.gid, gid3);
      t.deepEqual(
        hashDiffsReceived(g),
        [`|${base.gid}|-->|${gid2}|`],
        'the rerun compared up to the same gid',
      );
      t.deepEqual(
        (await restorableList(g, 'a1')).filter((gid) => gid >= gid2),
        await restorableList(g, 'a0'),
      );
      await sameOnBoth(t, g, gid2, device2);
      await sameOnBoth(t, g, gid3, device3);
    } finally {
      await relay.cut();
      await g.cleanup();
    }
  },
);

test.serial(
  'n14: after a new full backup on the primary, a plain replicate is refused naming --resync; with --resync a1 takes the new history and both are equal',
  async (t) => {
    const g = await Group.start(t, 'repl-n14', { archives: 2 });
    try {
      const { ok, walbc } = g;
      await ok('init-vol', 'vol', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 60);
      await ok('full-backup', 'vol', '--wait');
      await g.writeRandom(c, 30);
      await ok('snapshot', 'vol', '--wait');
      await ok('replicate', 'vol', 'a0', 'a1', '--wait');
      const oldList = await restorableList(g, 'a1');

      // a0 loses its history: reset, and a new full backup of the storage (a new archive uuid).
      await ok('stop', 'vol', 'a0', '--wait');
      await ok('reset-vol', 'vol', 'a0');
      await ok('stop', 'vol', 's0', '--wait');
      await ok('reset-vol', 'vol', 's0');
      await g.writeRandom(c, 30);
      await ok('full-backup', 'vol', '--wait');
      await g.writeRandom(c, 30);
      const gid = Number(await ok('snapshot', 'vol', '--wait'));
      const device = await g.deviceHash(c);

      const plain = await walbc('replicate', 'vol', 'a0', 'a1', '--wait');
      t.not(plain.code, 0, 'a plain replicate onto another history fails');
      t.regex(plain.stderr, /--resync/, 'and names the way out');
      t.deepEqual(await restorableList(g, 'a1'), oldList, 'a1 keeps its old history after the refusal');

      await ok('replicate', 'vol', 'a0', 'a1', '--resync', '--wait');
      t.regex(g.archives[1].stderr, /"event":"resync-done"/, 'the resync step fixed the base by hashes');
      t.is(await stateOf(g, 'a1'), 'Archived');
      t.deepEqual(await restorableList(g, 'a1'), await restorableList(g, 'a0'));
      await sameOnBoth(t, g, gid, device);
    } finally {
      await g.cleanup();
    }
  },
);
