// What a snapshot export may do and what waits for it (src/archive/policy.ts, src/config/archive.ts,
// docs/servers.md §6.10), in-process on hand-made volume facts: an export needs a restorable snapshot and no apply or
// merge running; while one runs, apply, merge, gc-diff, clear-vol and a resync give way; the export listener stays
// on loopback unless allowed.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import {
  applyChain,
  checkClearVol,
  checkGcDiff,
  exportChain,
  mergeRun,
  resyncRejection,
  type ResyncOffer,
  type StoredVolume,
} from '../../src/archive/policy';
import { loadArchiveConfig } from '../../src/config/archive';
import { DiffSet, diff, snap } from '../../src/common/meta';
import { makeTempDir, removeDir } from '../temp-files';

const volume = (): StoredVolume => ({
  state: 'Archived',
  sizeLb: 2048,
  storageUuid: 'aa'.repeat(16),
  archiveUuid: 'cc'.repeat(16),
  base: { snapB: snap(0), timestamp: 100 },
  diffs: new DiffSet([
    diff(snap(0), snap(1), { timestamp: 101 }),
    diff(snap(1), snap(2), { isMergeable: true, timestamp: 102 }),
    diff(snap(2), snap(3), { timestamp: 103 }),
  ]),
});
const facts = (v = volume()) => ({ state: 'Archived' as const, stop: 'not-stopping' as const, stored: v });

test('an export reads the chain a restore of its gid would apply', (t) => {
  t.deepEqual(
    exportChain('v', facts(), [], 3, []).map((d) => d.snapE.gidB),
    [1, 2, 3],
  );
  t.deepEqual(exportChain('v', facts(), ['Restore', 'Resize'], 0, []), [], 'the base alone; restores go on');
});

test('an export is refused for a gid that is not restorable, exported already, or while apply or merge runs', (t) => {
  t.throws(() => exportChain('v', facts(), [], 9, []), { code: 'INVALID_ARGUMENT' } as object);
  t.throws(() => exportChain('v', facts(), [], 3, [3]), { code: 'ALREADY_EXISTS' } as object);
  for (const busy of ['Apply', 'Merge'])
    t.throws(() => exportChain('v', facts(), [busy], 3, []), {
      code: 'FAILED_PRECONDITION',
      message: new RegExp(`busy \\(${busy}\\)`),
    } as object);
  const applying = { ...volume(), base: { snapB: snap(0), snapE: snap(2), timestamp: 100 } };
  t.throws(() => exportChain('v', facts(applying), [], 3, []), { code: 'FAILED_PRECONDITION' } as object);
  t.throws(() => exportChain('v', { ...facts(), stop: 'stopping' }, [], 3, []), {
    code: 'FAILED_PRECONDITION',
  } as object);
});

test('while a volume is exported, apply, merge, gc-diff and clear-vol are refused busy (Export) and a resync BUSY', (t) => {
  const exported = ['Export'];
  const busy = { code: 'FAILED_PRECONDITION', message: /busy \(Export\)/ } as object;
  t.throws(() => applyChain('v', facts(), exported, 3), busy);
  t.throws(() => mergeRun('v', facts(), exported, 0, 2), busy);
  t.throws(() => checkGcDiff('v', facts(), exported), { code: 'FAILED_PRECONDITION' } as object);
  t.throws(() => checkClearVol('v', exported), { code: 'FAILED_PRECONDITION' } as object);
  const offer: ResyncOffer = {
    volume: 'v',
    size: 2048,
    chunkSize: 64 << 10,
    archiveUuid: 'dd'.repeat(16),
    storageUuid: 'aa'.repeat(16),
    base: { snapB: snap(5), timestamp: 200 },
  };
  t.is(resyncRejection(facts(), [], offer), undefined, 'accepted without the export');
  t.is(resyncRejection(facts(), exported, offer)?.reason, 'BUSY');
  // Without the export the same calls pass.
  t.is(applyChain('v', facts(), [], 3).length, 3);
  t.is(mergeRun('v', facts(), [], 0, 2).diffs.length, 2);
});

test('export.tcp must be a loopback address unless export.tcpAllowRemote; export.socket defaults into the data directory', (t) => {
  const dir = makeTempDir('export-config');
  try {
    const file = (o: object) => {
      const p = path.join(dir, `${Math.random()}.json`);
      fs.writeFileSync(p, JSON.stringify({ dataDir: path.join(dir, 'data'), ...o }));
      return p;
    };
    t.is(loadArchiveConfig({ config: file({}) }).export.socket, path.join(dir, 'data', 'export.sock'));
    t.is(
      loadArchiveConfig({ config: file({ export: { tcp: '127.0.0.1:10809' } }) }).export.tcp,
      '127.0.0.1:10809',
    );
    t.throws(() => loadArchiveConfig({ config: file({ export: { tcp: '10.0.0.5:10809' } }) }), {
      code: 'CONFIG',
      message: /export.tcpAllowRemote/,
    } as object);
    t.is(
      loadArchiveConfig({ config: file({ export: { tcp: '10.0.0.5:10809', tcpAllowRemote: true } }) }).export
        .tcp,
      '10.0.0.5:10809',
    );
    t.throws(() => loadArchiveConfig({ config: file({ export: { threads: 0 } }) }), {
      code: 'CONFIG',
      message: /export.threads/,
    } as object);
  } finally {
    removeDir(dir);
  }
});
