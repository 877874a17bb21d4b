// A snapshot whose log is larger than one wlog transfer (maxWlogSendMb) ships in capped ranges: each one stops at
// the last whole logpack before the cap (a logpack is never split), and the snapshot restores to the device.
import test from 'ava';
import { Group } from '../group-fixture';

test.serial(
  'log beyond maxWlogSendMb ships in capped ranges that end on logpack boundaries; the snapshot restores to the device',
  async (t) => {
    // 1 MiB a transfer; about 4 MiB of writes of 4-128 KiB, so that the caps fall inside logpacks.
    const g = await Group.start(t, 'capped-wlog', { storageConfig: { maxWlogSendMb: 1 } });
    try {
      const { ok } = g;
      await ok('init-vol', 'vol', 'w0');
      await ok('full-backup', 'vol', '--wait');
      const c = await g.nbd();
      await g.writeRandom(c, 64);
      const gid = Number(await ok('snapshot', 'vol', '--wait'));
      t.is(await g.restoredHash('vol', gid), await g.deviceHash(c));
      const log = g.storages[0].stderr;
      const sent = [...log.matchAll(/"event":"wlog-sent".*"lsids":\[(\d+),(\d+)\]/g)].filter(
        (m) => m[1] !== m[2],
      );
      t.true(sent.length >= 3, `the log went in several capped transfers: ${sent.length}`);
      t.notRegex(log, /"event":"wlog-send-failed"/);
    } finally {
      await g.cleanup();
    }
  },
);
