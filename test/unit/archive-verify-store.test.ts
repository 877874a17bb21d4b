// The volume store's part of verification (docs/servers.md §6.9) on real files: the hash of a snapshot read
// virtually equals `walb-tool hash` of the image a restore writes, nothing is written meanwhile, and the saved
// verifications survive a reopen and stop counting after a new full backup.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { storedBackups } from '../../src/archive/policy';
import { ArchiveVolumeStore } from '../../src/archive/volume-store';
import { diff, snap } from '../../src/common/meta';
import { native } from '../../src/native';
import { runTool } from '../processes';
import { tempArea } from '../temp-files';

const tmp = tempArea('archive-verify-store');
test.after.always(() => tmp.cleanup());

const SIZE = 4 << 20;
const UUID = 'aa'.repeat(16);

/** A volume with a full backup at |0| and the diffs 0→1, 1→2 (one sorted, one indexed). */
async function volume(name: string): Promise<ArchiveVolumeStore> {
  const dataDir = tmp.name(name);
  const store = await ArchiveVolumeStore.init(dataDir, 'vol');
  await fullBackup(store);
  let lsid = 0;
  for (let i = 1; i <= 2; i++) {
    const wlog = tmp.name(`${name}-${i}.wlog`);
    lsid = (await native.wlogGen(wlog, { deviceSize: SIZE / 512, amount: 1 << 20, lsid, seed: 40 + i }))
      .endLsid;
    const wdiff = store.tempPath();
    await native.wlogToWdiff([wlog], wdiff, { indexed: i === 2 });
    await store.addDiff(wdiff, diff(snap(i - 1), snap(i), { timestamp: 1_700_000_000 + i }));
  }
  return store;
}

async function fullBackup(store: ArchiveVolumeStore): Promise<void> {
  const target = await store.beginFullSync(SIZE / 512);
  fs.writeFileSync(target, crypto.randomBytes(SIZE));
  await store.finishFullSync(snap(0), 1_700_000_000, UUID, SIZE / 512);
}

const files = (dir: string) => fs.readdirSync(dir, { recursive: true }).map(String).sort();

test('the hash of a snapshot read virtually is walb-tool hash of its restored image, and nothing is written', async (t) => {
  const store = await volume('hash');
  for (const gid of [0, 1, 2]) {
    const before = files(store.dir);
    const hash = await store.hashSnapshot(gid);
    t.deepEqual(files(store.dir), before, `gid ${gid}: no file added or left behind`);
    const image = await store.restore(gid);
    const tool = await runTool(['hash', image]);
    t.is(tool.code, 0, tool.stderr);
    t.is(tool.stdout, `${hash}  ${image}\n`, `gid ${gid}`);
    await store.delRestored(gid);
  }
  t.not(await store.hashSnapshot(1), await store.hashSnapshot(2));
});

test('saved verifications survive a reopen and no longer count once a new full backup starts another lineage', async (t) => {
  const store = await volume('saved');
  const dataDir = path.dirname(store.dir);
  const archiveUuid = store.archiveUuid;
  await store.saveVerification({ gid: 0, archiveUuid, timeMs: 0, ok: true, hash: 'ee'.repeat(16) });
  await store.saveVerification({ gid: 1, archiveUuid, timeMs: 1, ok: true, hash: 'ab'.repeat(16) });
  await store.saveVerification({
    gid: 2,
    archiveUuid,
    timeMs: 2,
    ok: false,
    errorCode: 'CORRUPTION',
    error: 'x',
  });
  await store.saveVerification({ gid: 1, archiveUuid, timeMs: 3, ok: true, hash: 'cd'.repeat(16) });
  t.false(
    fs.readdirSync(store.dir).some((n) => n.includes('.tmp')),
    'no temporary file is left',
  );

  const reopened = await ArchiveVolumeStore.open(dataDir, 'vol');
  const rows = storedBackups(reopened, await reopened.verifications());
  t.deepEqual(
    rows.map((r) => [r.gid, r.verification?.timeMs, r.verification?.hash ?? r.verification?.errorCode]),
    [
      [0, 0, 'ee'.repeat(16)],
      [1, 3, 'cd'.repeat(16)],
      [2, 2, 'CORRUPTION'],
    ],
  );

  await reopened.setState('SyncReady');
  await fullBackup(reopened);
  t.not(reopened.archiveUuid, archiveUuid);
  t.true(
    storedBackups(reopened, await reopened.verifications()).every((r) => r.verification === undefined),
    'gid 0 of the new full backup is other data',
  );
});
