// walbc status: the DETAIL column made from the typed facts, and what counts as needing an operator (its exit 1).
import test from 'ava';
import { statusDetail, statusProblems, type StatusRow } from '../../src/controller/controller';

const storage: StatusRow = {
  server: 's0',
  role: 'storage',
  volume: 'vol0',
  state: 'Target',
  actions: [],
  operations: [],
  storage: { doneGid: 7, queuedSnapshots: 1, logUsagePb: 25, logCapacityPb: 100, overflow: false },
};
const proxy: StatusRow = {
  server: 'p0',
  role: 'proxy',
  volume: 'vol0',
  state: 'Started',
  actions: ['WdiffSend'],
  operations: [],
  proxy: {
    archives: [
      {
        name: 'a0',
        pendingWdiffs: 2,
        pendingBytes: 3 << 20,
        sendError: false,
        queuedGids: [{ begin: 3, end: 5 }],
      },
    ],
  },
};
const archive: StatusRow = {
  server: 'a0',
  role: 'archive',
  volume: 'vol0',
  state: 'Archived',
  actions: [],
  operations: [],
  archive: {
    latest: { gidB: 7, gidE: 7 },
    diffs: 3,
    diffBytes: 1 << 20,
    restored: [5],
    newestRestorable: { gid: 7, timestamp: 1_800_000_000 },
    recoveryPointAgeSec: 60,
  },
};

test('the DETAIL column says where the volume stands, as it always did', (t) => {
  t.is(statusDetail(storage), 'done gid 7, 1 snapshot(s) queued, log 25% used');
  t.is(statusDetail(proxy), 'a0: 2 wdiff(s) 3.0 MiB to send');
  t.is(statusDetail(archive), 'latest |7|, 3 wdiff(s) 1.0 MiB, 1 restored');
  t.is(
    statusDetail({ ...archive, archive: { ...archive.archive!, latest: null } }),
    'no base, 3 wdiff(s) 1.0 MiB, 1 restored',
  );
  t.is(statusDetail({ ...proxy, proxy: { archives: [] } }), 'no archive registered');
});

test("an archive's row adds the disk usage of its base image, wdiffs and restored images when it reports it", (t) => {
  const disk = { base: 8 << 20, diffs: 1 << 19, restored: 3 << 20 };
  t.is(
    statusDetail({ ...archive, archive: { ...archive.archive!, disk } }),
    'latest |7|, 3 wdiff(s) 1.0 MiB, 1 restored; disk: base 8.0 MiB, wdiffs 0.5 MiB, restored 3.0 MiB',
  );
});

test('a healthy group has no problems', (t) => {
  t.deepEqual(statusProblems([storage, proxy, archive]), []);
});

test('an unreachable server, an overflow, a send error and an unreadable volume each need an operator', (t) => {
  const down: StatusRow = {
    server: 'p1',
    role: 'proxy',
    volume: '-',
    state: 'UNREACHABLE',
    actions: [],
    operations: [],
    error: 'no walb server answers at 127.0.0.1:1',
  };
  const overflow = { ...storage, storage: { ...storage.storage!, overflow: true } };
  const sendError = {
    ...proxy,
    proxy: {
      archives: [
        {
          name: 'a0',
          pendingWdiffs: 1,
          pendingBytes: 1,
          sendError: true,
          queuedGids: [{ begin: 3, end: 4 }],
        },
      ],
    },
  };
  const unreadable: StatusRow = { ...archive, archive: undefined, error: 'deadline exceeded' };
  t.is(statusDetail(overflow), 'done gid 7, 1 snapshot(s) queued, log 25% used, OVERFLOW');
  t.is(statusDetail(sendError), 'a0: 1 wdiff(s) 0.0 MiB to send, SEND-ERROR');
  t.deepEqual(statusProblems([down, overflow, sendError, unreadable]), [
    'p1 is unreachable',
    'the log of vol0 on s0 overflowed',
    'p0 gave up sending vol0 to a0',
    'vol0 on a0: deadline exceeded',
  ]);
});
