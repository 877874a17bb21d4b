// npm run soak [-- --minutes M] [--rounds N] [--seed S]: scenario 1 of docs/servers.md §12 (test/scenario1.ts) for
// long, on a group of its own: rounds until M minutes (default 30) have passed or N rounds have run, one line of
// progress per round, then a summary. A failure prints the seed that replays it and exits 1.
import { parseArgs } from 'node:util';
import { Group } from './group-fixture';
import { Scenario1, scenarioSeed } from './scenario1';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '30' },
      rounds: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  const minutes = Number(values.minutes);
  const rounds = values.rounds === undefined ? Infinity : Number(values.rounds);
  const seed = values.seed === undefined ? scenarioSeed() : Number(values.seed) >>> 0;
  if (!(minutes > 0) || !(rounds > 0) || Number.isNaN(seed)) {
    console.error('usage: npm run soak -- [--minutes M] [--rounds N] [--seed S]');
    return 2;
  }
  const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
  log(
    `scenario1 soak: seed ${seed}, at most ${minutes} min${rounds < Infinity ? ` and ${rounds} rounds` : ''}`,
  );
  const checks = {
    is(actual: unknown, expected: unknown, message?: string) {
      if (actual !== expected) throw new Error(message ?? `${String(actual)} !== ${String(expected)}`);
      return true;
    },
  };
  const g = await Group.start(checks, 'soak-scenario1');
  try {
    const summary = await new Scenario1(g, { seed, rounds, durationMs: minutes * 60_000, log }).run();
    log(`passed: ${JSON.stringify(summary)}`);
    return 0;
  } catch (err) {
    log(err instanceof Error ? err.message : String(err));
    return 1;
  } finally {
    await g.cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
