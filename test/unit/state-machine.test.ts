// The per-volume state machine of the servers (docs/servers.md §3.1), with the storage's table as the example.
import test from 'ava';
import { VolumeState, type Edge } from '../../src/common/state-machine';

type S =
  | 'Clear'
  | 'SyncReady'
  | 'Stopped'
  | 'Target'
  | 'Standby'
  | 'InitVol'
  | 'ClearVol'
  | 'FullSync'
  | 'StartTarget'
  | 'StopTarget'
  | 'Reset'
  | 'StartStandby'
  | 'StopStandby';

const STORAGE: Edge<S>[] = [
  { from: 'Clear', via: 'InitVol', to: 'SyncReady' },
  { from: 'SyncReady', via: 'ClearVol', to: 'Clear' },
  { from: 'SyncReady', via: 'FullSync', to: 'Stopped' },
  { from: 'Stopped', via: 'Reset', to: 'SyncReady' },
  { from: 'Stopped', via: 'StartTarget', to: 'Target' },
  { from: 'Target', via: 'StopTarget', to: 'Stopped' },
  { from: 'SyncReady', via: 'StartStandby', to: 'Standby' },
  { from: 'Standby', via: 'StopStandby', to: 'SyncReady' },
];

test('a transaction is in its transient state while it runs and commits to the target, persisted first', async (t) => {
  const persisted: string[] = [];
  const v = new VolumeState<S>('vol0', STORAGE, 'Clear', async (s) => {
    persisted.push(s);
  });
  await v.transact('InitVol', async () => {
    t.is(v.state, 'InitVol');
    t.false(v.isSteady());
  });
  t.is(v.state, 'SyncReady');
  t.deepEqual(persisted, ['SyncReady']);
});

test('a failing transaction rolls back to the state it started from and persists nothing', async (t) => {
  const persisted: string[] = [];
  const v = new VolumeState<S>('vol0', STORAGE, 'SyncReady', async (s) => {
    persisted.push(s);
  });
  await t.throwsAsync(
    v.transact('FullSync', async () => {
      throw new Error('archive went away');
    }),
    { message: 'archive went away' },
  );
  t.is(v.state, 'SyncReady');
  t.deepEqual(persisted, []);
});

test('a failing persist aborts the commit', async (t) => {
  const v = new VolumeState<S>('vol0', STORAGE, 'Stopped', async () => {
    throw new Error('disk full');
  });
  await t.throwsAsync(
    v.transact('StartTarget', async () => undefined),
    { message: 'disk full' },
  );
  t.is(v.state, 'Stopped');
});

test('a transaction from the wrong state is refused with FAILED_PRECONDITION naming the states', async (t) => {
  const v = new VolumeState<S>('vol0', STORAGE, 'Target');
  const err = await t.throwsAsync(v.transact('FullSync', async () => undefined));
  t.is((err as { code?: string }).code, 'FAILED_PRECONDITION');
  t.regex(err!.message, /vol0 is Target; FullSync needs SyncReady/);
  t.throws(() => v.require(['Stopped'], 'reset-vol'), {
    message: /reset-vol: volume vol0 is Target, needs Stopped/,
  });
});

test('Standby is entered from SyncReady only, left back to SyncReady, and refuses the target transactions', async (t) => {
  const persisted: string[] = [];
  const v = new VolumeState<S>('vol0', STORAGE, 'SyncReady', async (s) => {
    persisted.push(s);
  });
  await v.transact('StartStandby', async () => t.is(v.state, 'StartStandby'));
  t.is(v.state, 'Standby');
  for (const via of ['FullSync', 'StartTarget', 'StopTarget', 'Reset', 'ClearVol'] as const) {
    const err = await t.throwsAsync(v.transact(via, async () => undefined));
    t.regex(err!.message, new RegExp(`vol0 is Standby; ${via} needs`));
  }
  await v.transact('StopStandby', async () => t.is(v.state, 'StopStandby'));
  t.is(v.state, 'SyncReady');
  t.deepEqual(persisted, ['Standby', 'SyncReady']);
  const stopped = new VolumeState<S>('vol1', STORAGE, 'Stopped');
  const err = await t.throwsAsync(stopped.transact('StartStandby', async () => undefined));
  t.regex(err!.message, /vol1 is Stopped; StartStandby needs SyncReady/);
});

test('waitUntilIdle returns once the state is steady and no action runs, and times out otherwise', async (t) => {
  const v = new VolumeState<S>('vol0', STORAGE, 'Target');
  const end = v.beginAction('WlogSend');
  t.deepEqual(v.runningActions(), ['WlogSend']);
  const waiting = v.waitUntilIdle(5000);
  setTimeout(end, 50);
  await waiting;
  t.deepEqual(v.runningActions(), []);
  v.beginAction('WlogSend');
  await t.throwsAsync(v.waitUntilIdle(100), { message: /still Target with actions \[WlogSend\]/ });
});
