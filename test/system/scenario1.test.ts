// Scenario 1 of docs/servers.md §12 for a bounded number of rounds (test/scenario1.ts): three volumes with writes
// going on, random full backups, snapshots, hash backups, merges, applies, stops and starts and SIGKILLs of a
// server, every restore compared with the device's content at its snapshot. The seed is printed; set
// WALB_SCENARIO1_SEED to replay a failure, WALB_SCENARIO1_ROUNDS for more rounds (`npm run soak` runs it for long).
import test from 'ava';
import { Group } from '../group-fixture';
import { DECK_SIZE, Scenario1, VOLUMES, scenarioSeed } from '../scenario1';

// One deck: every kind of action runs at least once (about 2 minutes on a busy 2-core machine).
const ROUNDS = Number(process.env.WALB_SCENARIO1_ROUNDS ?? Math.ceil(DECK_SIZE / VOLUMES));

test.serial(
  'scenario1: random backups, snapshots, merges, applies, stops and kills with writes going on never make a snapshot restore to other bytes nor leave the restorable list',
  async (t) => {
    t.timeout(15 * 60_000, 'the rounds of scenario1');
    const seed = scenarioSeed();
    t.log(`seed ${seed} (WALB_SCENARIO1_SEED=${seed} replays it)`);
    const g = await Group.start(t, 'scenario1');
    try {
      const summary = await new Scenario1(g, { seed, rounds: ROUNDS, log: (line) => t.log(line) }).run();
      t.log(JSON.stringify(summary));
      t.is(summary.rounds, ROUNDS);
      for (const kind of ['full-backup', 'hash-backup', 'merge', 'apply', 'stop-start', 'kill'])
        t.true((summary.actions[kind] ?? 0) > 0, `${kind} ran`);
      t.true(summary.restoresVerified >= ROUNDS * VOLUMES, 'every volume verified every round');
    } finally {
      await g.cleanup();
    }
  },
);
