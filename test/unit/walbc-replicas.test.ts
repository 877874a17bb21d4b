// Where each archive of a volume stands beside the primary (walbc status's archives table, synchronizing checks).
import test from 'ava';
import { errorCode } from '../../src/common/errors';
import { archiveStandings, isSynchronizing, standingLine } from '../../src/controller/replicas';

test('an archive registered on every proxy that has the volume is synchronizing; on none it is not', (t) => {
  t.true(
    isSynchronizing('vol', 'a1', [
      { proxy: 'p0', registered: true },
      { proxy: 'p1', registered: true },
    ]),
  );
  t.false(isSynchronizing('vol', 'a1', [{ proxy: 'p0', registered: false }]));
  t.false(isSynchronizing('vol', 'a1', []), 'no proxy has the volume');
});

test('an archive registered on some proxies only is FAILED_PRECONDITION naming both sides', (t) => {
  const err = t.throws(() =>
    isSynchronizing('vol', 'a1', [
      { proxy: 'p0', registered: true },
      { proxy: 'p1', registered: false },
    ]),
  );
  t.is(errorCode(err), 'FAILED_PRECONDITION');
  t.regex(err.message, /a1 is registered for vol on p0 but not on p1/);
});

const proxies = [
  {
    proxy: 'p0',
    queued: new Map([
      ['a0', 0],
      ['a1', 3 << 20],
    ]),
  },
  {
    proxy: 'p1',
    queued: new Map([
      ['a0', 0],
      ['a1', 1 << 20],
    ]),
  },
];

test('a synchronizing secondary is behind by the gids and seconds between the latest snapshots and by what the proxies queue for it', (t) => {
  const [primary, secondary] = archiveStandings(
    'vol',
    { archive: 'a0', latestGid: 12, latest: { gid: 12, timestamp: 1000 } },
    [{ archive: 'a1', latestGid: 10, latest: { gid: 10, timestamp: 990 } }],
    [
      { gidB: 8, bytes: 100 },
      { gidB: 10, bytes: 200 },
      { gidB: 11, bytes: 300 },
    ],
    proxies,
  );
  t.deepEqual(primary, {
    volume: 'vol',
    archive: 'a0',
    primary: true,
    latest: { gid: 12, timestamp: 1000 },
    registeredOn: ['p0', 'p1'],
    synchronizing: true,
    behind: null,
  });
  t.true(secondary.synchronizing);
  t.deepEqual(secondary.behind, { gids: 2, bytes: 4 << 20, seconds: 10 });
  t.is(standingLine(primary), 'vol\ta0\t12\t1970-01-01T00:16:40\tyes\tprimary');
  t.is(standingLine(secondary), 'vol\ta1\t10\t1970-01-01T00:16:30\tyes\t2 gid(s), 4.0 MiB, 10 s');
});

test('a secondary that is not synchronizing lacks the bytes of the primary diffs past its latest gid', (t) => {
  const [, secondary] = archiveStandings(
    'vol',
    { archive: 'a0', latestGid: 12, latest: { gid: 12, timestamp: 1000 } },
    [{ archive: 'a2', latestGid: 10, latest: { gid: 10, timestamp: 990 } }],
    [
      { gidB: 8, bytes: 100 },
      { gidB: 10, bytes: 200 },
      { gidB: 11, bytes: 300 },
    ],
    proxies,
  );
  t.false(secondary.synchronizing);
  t.deepEqual(secondary.registeredOn, []);
  t.deepEqual(secondary.behind, { gids: 2, bytes: 500, seconds: 10 });
  t.is(standingLine(secondary), 'vol\ta2\t10\t1970-01-01T00:16:30\tno\t2 gid(s), 0.0 MiB, 10 s');
});

test('a secondary with nothing restorable is behind by every gid, with no time, and one registered on some proxies shows them', (t) => {
  const [, secondary] = archiveStandings(
    'vol',
    { archive: 'a0', latestGid: 5, latest: { gid: 5, timestamp: 1000 } },
    [{ archive: 'a1', latestGid: 0, latest: null }],
    [{ gidB: 0, bytes: 700 }],
    [proxies[0], { proxy: 'p1', queued: new Map([['a0', 0]]) }],
  );
  t.false(secondary.synchronizing);
  t.deepEqual(secondary.registeredOn, ['p0']);
  t.deepEqual(secondary.behind, { gids: 5, bytes: 3 << 20, seconds: null });
  t.is(standingLine(secondary), 'vol\ta1\t-\t-\tpartly (p0)\t5 gid(s), 3.0 MiB, -');
});
