// The small shared pieces every role uses: the foreground-slot limit, the retry back-off with jitter and the
// volume-name check.
import test from 'ava';
import { Backoff, JITTER } from '../../src/common/backoff';
import { errorCode } from '../../src/common/errors';
import { ForegroundSlots } from '../../src/common/foreground';
import { checkVolumeName } from '../../src/common/volume-name';

test('foreground slots: the slot past the limit is refused with FAILED_PRECONDITION naming the limit', (t) => {
  const slots = new ForegroundSlots(2);
  const a = slots.take();
  slots.take();
  t.is(slots.inUse, 2);
  const err = t.throws(() => slots.take());
  t.is(errorCode(err), 'FAILED_PRECONDITION');
  t.regex(err.message, /too many foreground tasks \(2 of 2\)/);
  a();
  t.is(slots.inUse, 1);
  t.notThrows(() => slots.take());
});

test('foreground slots: releasing a slot twice frees it once', (t) => {
  const slots = new ForegroundSlots(1);
  const release = slots.take();
  release();
  release();
  t.is(slots.inUse, 0);
  slots.take();
  t.throws(() => slots.take());
});

test('foreground slots: a limit of 0 refuses everything', (t) => {
  t.throws(() => new ForegroundSlots(0).take());
});

test('back-off without jitter: the first delay, then doubling up to the longest; reset starts over', (t) => {
  const b = new Backoff<string>(1000, 5000, () => 0);
  t.deepEqual(
    [1, 2, 3, 4, 5].map(() => b.next('v')),
    [1000, 2000, 4000, 5000, 5000],
  );
  t.is(b.next('other'), 1000, 'keys back off on their own');
  b.reset('v');
  t.is(b.next('v'), 1000);
  b.next('v');
  b.clear();
  t.is(b.next('v'), 1000);
});

test('back-off jitter shortens a delay by at most JITTER of it, never lengthens it', (t) => {
  const longest = new Backoff<string>(1000, 8000, () => 0.999999);
  t.is(longest.next('v'), Math.round(1000 * (1 - JITTER * 0.999999)));
  // Jitter does not feed back into the doubling: the next delay doubles the un-jittered one.
  t.is(longest.next('v'), Math.round(2000 * (1 - JITTER * 0.999999)));
  const real = new Backoff<string>(1000, 1000);
  for (let i = 0; i < 200; i++) {
    const d = real.next('v');
    t.true(d >= 1000 * (1 - JITTER) && d <= 1000, String(d));
  }
});

test('back-off jitter spreads peers that fail together', (t) => {
  const delays = new Set(Array.from({ length: 20 }, () => new Backoff<string>(10_000, 10_000).next('v')));
  t.true(delays.size > 1, [...delays].join(','));
});

test('volume names: 1-64 of 0-9 A-Z a-z - pass; anything that could leave its directory is INVALID_ARGUMENT', (t) => {
  for (const ok of ['v', 'vol0', 'A-b-9', 'x'.repeat(64)]) t.notThrows(() => checkVolumeName(ok), ok);
  for (const bad of ['', 'x'.repeat(65), '../etc', 'a/b', 'a.b', 'a_b', 'vol 0', '.'])
    t.is(errorCode(t.throws(() => checkVolumeName(bad))), 'INVALID_ARGUMENT', bad);
});
