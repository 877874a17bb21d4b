// walbc recover's decisions (src/controller/recover.ts): each case of the recovery runbook (docs/operations.md) as
// status rows, what recover finds in them and the walbc commands it plans, in order.
import test from 'ava';
import type { Layout, StatusRow } from '../../src/controller/controller';
import {
  classifyRecovery,
  findingText,
  planRecovery,
  stepLine,
  type RecoverFacts,
  type ShippingTarget,
} from '../../src/controller/recover';

const layout: Layout = {
  storages: [{ id: 's0', address: '127.0.0.1:1000' }],
  proxies: [
    { id: 'p0', address: '127.0.0.1:2000' },
    { id: 'p1', address: '127.0.0.1:2001' },
  ],
  archives: [
    { id: 'a0', address: '127.0.0.1:3000' },
    { id: 'a1', address: '127.0.0.1:3001' },
  ],
};

const base = { actions: [], operations: [] };
/** s0 has shipped the log up to `doneGid` (the archive's latest gid, 10, by default). */
const storage = (state = 'Target', overflow = false, doneGid = 10): StatusRow => ({
  ...base,
  server: 's0',
  role: 'storage',
  volume: 'vol',
  state,
  storage: { doneGid, queuedSnapshots: 0, logUsagePb: 0, logCapacityPb: 1024, overflow },
});
type Runs = { begin: number; end: number }[];
/** `queued`: the gid runs of the wdiffs queued per archive (none by default). */
const proxy = (
  id: string,
  archives: string[],
  sendError: string[] = [],
  queued: Record<string, Runs> = {},
): StatusRow => ({
  ...base,
  server: id,
  role: 'proxy',
  volume: 'vol',
  state: 'Started',
  proxy: {
    archives: archives.map((name) => ({
      name,
      pendingWdiffs: (queued[name] ?? []).length,
      pendingBytes: 0,
      sendError: sendError.includes(name),
      queuedGids: queued[name] ?? [],
    })),
  },
});
/** `gid`: its latest snapshot's gid (10 by default). */
const archive = (id: string, state = 'Archived', withBase = true, gid = 10): StatusRow => ({
  ...base,
  server: id,
  role: 'archive',
  volume: 'vol',
  state,
  archive: {
    latest: withBase ? { gidB: gid, gidE: gid } : null,
    diffs: 0,
    diffBytes: 0,
    restored: [],
    newestRestorable: null,
    recoveryPointAgeSec: null,
  },
});
const unreachable = (id: string, role: StatusRow['role']): StatusRow => ({
  ...base,
  server: id,
  role,
  volume: '-',
  state: 'UNREACHABLE',
  error: 'connect ECONNREFUSED',
});
const shipping = (available: Record<string, boolean> = {}): Record<string, ShippingTarget[]> => ({
  s0: layout.proxies.map((p) => ({ address: p.address, available: available[p.id] ?? true })),
});

/** The healthy group: s0 Target, both proxies forwarding to a0, a0 with a base. */
const healthy = (): StatusRow[] => [storage(), proxy('p0', ['a0']), proxy('p1', ['a0']), archive('a0')];

function recover(rows: StatusRow[], shipsTo = shipping(), opts: { wdev?: string } = {}) {
  const facts: RecoverFacts = { layout, rows, shipsTo };
  const findings = classifyRecovery(facts);
  return {
    findings: findings.map((f) => `${f.volume} ${f.server} ${f.kind}`),
    plan: planRecovery(facts, findings, opts).map(stepLine),
  };
}

test('a healthy group: every volume healthy, nothing to do', (t) => {
  t.deepEqual(recover(healthy()), { findings: ['vol - healthy'], plan: [] });
});

test('a server that does not answer is to be started first, and everything waits for it', (t) => {
  const rows = [...healthy().filter((r) => r.server !== 'a0'), unreachable('a0', 'archive')];
  const r = recover(rows);
  t.deepEqual(r.findings, ['- a0 unreachable', 'vol - healthy']);
  t.deepEqual(r.plan, [
    '-\ta0\toperator: start walb-archive on the host of a0 (systemctl start walb-archive), then walbc recover again',
  ]);
});

test('a proxy that is back but still held unavailable by the storage: kick-all', (t) => {
  const r = recover(healthy(), shipping({ p0: false }));
  t.deepEqual(r.findings, ['- s0 proxy-unavailable', 'vol - healthy']);
  t.deepEqual(r.plan, ['-\t-\twalbc kick-all']);
});

test('a proxy held unavailable that is still down is to be started, not kicked', (t) => {
  const rows = [...healthy().filter((r) => r.server !== 'p0'), unreachable('p0', 'proxy')];
  const r = recover(rows, shipping({ p0: false }));
  t.deepEqual(r.findings, ['- p0 unreachable', 'vol - healthy']);
  t.is(r.plan.length, 1);
  t.regex(r.plan[0], /operator: start walb-proxy/);
});

test('a send error to an archive that is back and has the volume: kick-all', (t) => {
  const rows = [storage(), proxy('p0', ['a0'], ['a0']), proxy('p1', ['a0']), archive('a0')];
  const r = recover(rows);
  t.deepEqual(r.findings, ['vol p0 send-error']);
  t.deepEqual(r.plan, ['-\t-\twalbc kick-all']);
});

test('an overflowed log: hash backup from the Stopped storage (stopped first while still Target)', (t) => {
  const stopped = recover([
    storage('Stopped', true),
    proxy('p0', ['a0']),
    proxy('p1', ['a0']),
    archive('a0'),
  ]);
  t.deepEqual(stopped.findings, ['vol s0 overflow']);
  t.deepEqual(stopped.plan, ['vol\ts0\twalbc hash-backup vol --storage s0 --wait']);
  const target = recover([storage('Target', true), proxy('p0', ['a0']), proxy('p1', ['a0']), archive('a0')]);
  t.deepEqual(target.plan, [
    'vol\ts0\twalbc stop vol s0 --wait',
    'vol\ts0\twalbc hash-backup vol --storage s0 --wait',
  ]);
});

test("the storage's metadata lost: init-storage on the wdev given, then hash backup; without a wdev an operator's step", (t) => {
  const rows = [proxy('p0', ['a0']), proxy('p1', ['a0']), archive('a0')];
  const r = recover(rows, shipping(), { wdev: 'w0' });
  t.deepEqual(r.findings, ['vol s0 storage-lost']);
  t.deepEqual(r.plan, [
    'vol\ts0\twalbc init-storage vol w0 --storage s0',
    'vol\ts0\twalbc hash-backup vol --storage s0 --wait',
  ]);
  t.deepEqual(recover(rows).plan, [
    'vol\ts0\toperator: walbc init-storage vol WDEV --storage s0 (WDEV: the wdev of vol on s0)',
    'vol\ts0\twalbc hash-backup vol --storage s0 --wait',
  ]);
});

test('a storage that does not answer is not taken for one that lost its metadata', (t) => {
  const r = recover(
    [unreachable('s0', 'storage'), proxy('p0', ['a0']), proxy('p1', ['a0']), archive('a0')],
    {},
  );
  t.deepEqual(r.findings, ['- s0 unreachable', 'vol - healthy']);
});

test('a proxy the storage ships to lost the volume: start-synchronizing the primary, stop, hash backup', (t) => {
  const r = recover([storage(), proxy('p1', ['a0']), archive('a0')]);
  t.deepEqual(r.findings, ['vol p0 proxy-lost']);
  t.deepEqual(r.plan, [
    'vol\ta0\twalbc start-synchronizing vol a0',
    'vol\ts0\twalbc stop vol s0 --wait',
    'vol\ts0\twalbc hash-backup vol --storage s0 --wait',
  ]);
});

test('a proxy that no storage ships to and lacks the volume (one joining the layout) is not lost', (t) => {
  const ships = { s0: [{ address: layout.proxies[1].address, available: true }] };
  t.deepEqual(recover([storage(), proxy('p1', ['a0']), archive('a0')], ships).findings, ['vol - healthy']);
});

test('a hash backup makes a synchronizing secondary synchronizing again afterwards', (t) => {
  const rows = [storage('Stopped', true), proxy('p0', ['a0', 'a1']), proxy('p1', ['a0', 'a1'])];
  const r = recover([...rows, archive('a0'), archive('a1')]);
  t.deepEqual(r.plan, [
    'vol\ts0\twalbc hash-backup vol --storage s0 --wait',
    'vol\ta1\twalbc replicate vol a0 a1 --sync',
  ]);
});

test('the primary archive lost the volume, no synchronizing secondary: InitVol, reset the storage, full backup, kick', (t) => {
  const r = recover([storage(), proxy('p0', ['a0'], ['a0']), proxy('p1', ['a0'])]);
  t.deepEqual(r.findings, ['vol a0 primary-lost']);
  t.deepEqual(r.plan, [
    `vol\ta0\twalbc call a0 InitVol '{"volume":"vol"}'`,
    'vol\ts0\twalbc stop vol s0 --wait',
    'vol\ts0\twalbc reset-vol vol s0',
    'vol\ts0\twalbc full-backup vol --storage s0 --wait',
    '-\t-\twalbc kick-all',
  ]);
  const empty = recover([
    storage('Stopped'),
    proxy('p0', ['a0']),
    proxy('p1', ['a0']),
    archive('a0', 'SyncReady', false),
  ]);
  t.deepEqual(empty.findings, ['vol a0 primary-lost'], 'there but without a base');
  t.deepEqual(empty.plan.slice(0, 2), [
    'vol\ts0\twalbc reset-vol vol s0',
    'vol\ts0\twalbc full-backup vol --storage s0 --wait',
  ]);
});

test('a volume initialized but never backed up is not a lost primary', (t) => {
  const r = recover([
    storage('SyncReady'),
    proxy('p0', ['a0']),
    proxy('p1', ['a0']),
    archive('a0', 'SyncReady', false),
  ]);
  t.deepEqual(r.findings, ['vol - healthy']);
});

test("the primary lost the volume while a1 synchronizes: stop-synchronizing a0, then the operator's restart onto a1", (t) => {
  const r = recover([storage(), proxy('p0', ['a0', 'a1'], ['a0']), proxy('p1', ['a0', 'a1']), archive('a1')]);
  t.deepEqual(r.findings, ['vol a0 primary-lost']);
  t.is(r.plan[0], 'vol\ta0\twalbc stop-synchronizing vol a0');
  t.regex(
    r.plan[1],
    /^vol\t-\toperator: restart every storage with a1 as its archive \(WALB_ARCHIVE=127\.0\.0\.1:3001/,
  );
  t.regex(
    r.plan[1],
    /list a1 first in the layout's archives; for a secondary again: walbc replicate vol a1 a0 --sync$/,
  );
  t.is(r.plan.length, 2);
});

test('a secondary registered on some proxies only is not promoted: a full backup instead', (t) => {
  const rows = [storage(), proxy('p0', ['a0', 'a1']), proxy('p1', ['a0']), archive('a1')];
  const findings = classifyRecovery({ layout, rows, shipsTo: shipping() });
  t.is(findingText(findings[0]), 'the primary archive a0 lost vol; a full backup starts it again');
  t.is(recover(rows).plan.at(-2), 'vol\ts0\twalbc full-backup vol --storage s0 --wait');
});

test('a synchronizing secondary lost the volume: replicate --sync from the primary, then kick-all', (t) => {
  const r = recover([storage(), proxy('p0', ['a0', 'a1'], ['a1']), proxy('p1', ['a0', 'a1']), archive('a0')]);
  t.deepEqual(r.findings, ['vol a1 secondary-lost']);
  t.deepEqual(r.plan, ['vol\ta1\twalbc replicate vol a0 a1 --sync', '-\t-\twalbc kick-all']);
});

test('a volume with an operation running is left alone until it ends', (t) => {
  const rows = healthy();
  rows[0] = {
    ...storage('Stopped', true),
    operations: [{ id: 'op-1', kind: 'hash-backup', done: 1, total: 2, startedMs: 0 }],
  };
  const r = recover(rows);
  t.deepEqual(r.findings, ['vol s0 busy']);
  t.deepEqual(r.plan, []);
});

test('a lost primary with no storage backing the volume up: the full backup is left to an operator', (t) => {
  const r = recover([storage('Standby'), proxy('p0', ['a0']), proxy('p1', ['a0'])]);
  t.deepEqual(r.findings, ['vol a0 primary-lost']);
  t.deepEqual(r.plan, [
    'vol\t-\toperator: no storage backs vol up: a full backup from the storage that should (walbc full-backup vol --storage ID --wait)',
  ]);
});

// ---- a proxy that lost its wdiffs but kept its registrations: the archive at gid 10 ----

const HASH_BACKUP_PLAN = [
  'vol\ts0\twalbc stop vol s0 --wait',
  'vol\ts0\twalbc hash-backup vol --storage s0 --wait',
];

test('the storage shipped past the archive and no proxy holds the wdiff from there: proxy-gap naming the proxy refused as too new, stop, hash backup', (t) => {
  const rows = [storage('Target', false, 14), proxy('p0', ['a0'], [], { a0: [{ begin: 12, end: 14 }] })];
  const r = recover([...rows, proxy('p1', ['a0']), archive('a0')]);
  t.deepEqual(r.findings, ['vol p0 proxy-gap']);
  t.deepEqual(r.plan, HASH_BACKUP_PLAN);
  const findings = classifyRecovery({
    layout,
    rows: [...rows, proxy('p1', ['a0']), archive('a0')],
    shipsTo: shipping(),
  });
  t.is(
    findingText(findings[0]),
    "a0 is at gid 10 of vol, which every storage shipped past and no proxy holds a wdiff from: a proxy lost it; p0's wdiffs are refused as too new",
  );
});

test('a gap with nothing queued anywhere (no write since the loss) is a gap too, naming no proxy', (t) => {
  const stale = { a0: [{ begin: 8, end: 10 }] };
  const r = recover([
    storage('Stopped', false, 12),
    proxy('p0', ['a0'], [], stale),
    proxy('p1', ['a0']),
    archive('a0'),
  ]);
  t.deepEqual(r.findings, ['vol - proxy-gap'], 'a wdiff the archive has (too old) does not close it');
  t.deepEqual(r.plan, ['vol\ts0\twalbc hash-backup vol --storage s0 --wait']);
});

test('a gap: the synchronizing secondary is replicated --sync after the hash backup', (t) => {
  const queued = { a0: [{ begin: 12, end: 14 }], a1: [{ begin: 12, end: 14 }] };
  const r = recover([
    storage('Target', false, 14),
    proxy('p0', ['a0', 'a1'], [], queued),
    proxy('p1', ['a0', 'a1']),
    archive('a0'),
    archive('a1'),
  ]);
  t.deepEqual(r.findings, ['vol p0 proxy-gap']);
  t.deepEqual(r.plan, [...HASH_BACKUP_PLAN, 'vol\ta1\twalbc replicate vol a0 a1 --sync']);
});

test('a synchronizing secondary that the storage shipped past and no proxy holds a wdiff for: proxy-gap on it, replicate --sync and a kick', (t) => {
  const queued = { a1: [{ begin: 12, end: 14 }] };
  const rows = [
    storage('Target', false, 14),
    proxy('p0', ['a0', 'a1'], [], queued),
    proxy('p1', ['a0', 'a1']),
    archive('a0', 'Archived', true, 14),
    archive('a1'),
  ];
  const r = recover(rows);
  t.deepEqual(r.findings, ['vol p0 proxy-gap']);
  t.deepEqual(r.plan, ['vol\ta1\twalbc replicate vol a0 a1 --sync', '-\t-\twalbc kick-all']);
  t.is(
    findingText(classifyRecovery({ layout, rows, shipsTo: shipping() })[0]),
    "a1 is at gid 10 of vol, which every storage shipped past and no proxy holds a wdiff from: a proxy lost it; p0's wdiffs are refused as too new",
  );
  // A proxy still holding the wdiff a1 takes next: slow, not a gap; nor for a secondary the proxies do not send to.
  const feeding = proxy('p1', ['a0', 'a1'], [], { a1: [{ begin: 10, end: 12 }] });
  t.deepEqual(recover([...rows.slice(0, 2), feeding, ...rows.slice(3)]).findings, ['vol - healthy']);
  const notSynchronizing = [storage('Target', false, 14), proxy('p0', ['a0']), proxy('p1', ['a0'])];
  t.deepEqual(recover([...notSynchronizing, archive('a0', 'Archived', true, 14), archive('a1')]).findings, [
    'vol - healthy',
  ]);
});

test('a proxy that still holds the wdiff the archive takes next is slow, not a gap', (t) => {
  for (const run of [
    { begin: 10, end: 14 },
    { begin: 8, end: 11 },
  ]) {
    const rows = [
      storage('Target', false, 14),
      proxy('p0', ['a0'], [], { a0: [{ begin: 12, end: 14 }] }),
      proxy('p1', ['a0'], [], { a0: [run] }),
      archive('a0'),
    ];
    t.deepEqual(recover(rows).findings, ['vol - healthy'], `p1 holds [${run.begin}, ${run.end})`);
  }
});

test("a storage that still holds the log from the archive's gid on is slow, not a gap", (t) => {
  for (const doneGid of [10, 9]) {
    const rows = [
      storage('Target', false, doneGid),
      proxy('p0', ['a0'], [], { a0: [{ begin: 12, end: 14 }] }),
      proxy('p1', ['a0']),
      archive('a0'),
    ];
    t.deepEqual(recover(rows).findings, ['vol - healthy'], `done gid ${doneGid}`);
  }
});

test('no gap is concluded from what is not known: a proxy down, a queue not described, a status not read', (t) => {
  const gap = () => [
    storage('Target', false, 14),
    proxy('p0', ['a0'], [], { a0: [{ begin: 12, end: 14 }] }),
    proxy('p1', ['a0']),
    archive('a0'),
  ];
  const down = [...gap().filter((r) => r.server !== 'p1'), unreachable('p1', 'proxy')];
  t.deepEqual(recover(down).findings, ['- p1 unreachable', 'vol - healthy']);
  const older = gap();
  older[2] = proxy('p1', ['a0']);
  older[2].proxy!.archives[0].pendingWdiffs = 1;
  t.deepEqual(recover(older).findings, ['vol - healthy'], 'a proxy that does not report its queued gids');
  const unread = gap();
  unread[2] = { ...proxy('p1', ['a0']), proxy: undefined, error: 'deadline exceeded' };
  t.deepEqual(recover(unread).findings, ['vol - healthy']);
});
