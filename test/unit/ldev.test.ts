// Logs through a log device: restore a wlog into a formatted ldev (a sparse file), extract it back, and the
// torn-pack shrinking of docs/formats.md §2.8 (wlog-cat: a pack whose record i > 0 is bad is cut to its first i
// records and re-checksummed; one whose first record is bad is dropped).
import test from 'ava';
import fs from 'node:fs';
import { native } from '../../src/native';
import { allPacks, readWlogHeader } from '../addon-readers';
import { LB, buildLogpack, buildWlog, csum, parseWlog, type LogRecordSpec } from '../format-oracle';
import { runTool } from '../processes';
import { firstDiff, patchFile, prngBytes, readRange, sameBytes, sparseFile, tempArea } from '../temp-files';

const tmp = tempArea('ldev');
test.after.always(() => tmp.cleanup());

/** A formatted ldev whose ring holds exactly `ring` PB (plus a partial PB that must stay unused). */
async function makeLdev(pbs: number, ring: number): Promise<string> {
  const rb = 4096 / pbs + 2;
  const file = sparseFile(tmp.name(`ldev-${pbs}`), (rb + ring) * pbs + 100);
  const s = await native.formatLdev(file, { pbs });
  if (s.ringBufferSize !== ring) throw new Error(`ring ${s.ringBufferSize}, wanted ${ring}`);
  return file;
}

for (const pbs of [512, 4096]) {
  test(`a wlog restored into an ldev and extracted back is the same file, across the ring end (pbs ${pbs})`, async (t) => {
    const ring = pbs === 512 ? 3000 : 400;
    const ldev = await makeLdev(pbs, ring);
    const wlog = tmp.name('in.wlog');
    const g = await native.wlogGen(wlog, {
      pbs,
      deviceSize: 8192,
      amount: pbs === 512 ? 1 << 20 : 1200 << 10,
      maxIoSize: pbs === 512 ? 32 : 64,
      ringBufferSize: ring,
      lsid: 10 * ring - 100, // starts near the end of the ring, on a later lap
      discardRatio: 0.1,
      seed: pbs,
    });
    t.true(g.paddings > 0, 'the logs wrap the ring');
    t.true(g.endLsid - g.beginLsid < ring);

    t.is(await native.ldevRestore(wlog, ldev), g.endLsid);
    const wlogHeader = readWlogHeader(wlog);
    t.like(await native.readSuper(ldev), {
      oldestLsid: g.beginLsid,
      writtenLsid: g.beginLsid,
      salt: g.salt,
      uuid: wlogHeader.uuid,
      ringBufferSize: ring,
    });
    const out = tmp.name('out.wlog');
    const x = await native.ldevExtract(ldev, out, {});
    t.deepEqual(x, {
      beginLsid: g.beginLsid,
      endLsid: g.endLsid,
      packs: g.packs,
      bytes: x.bytes,
      shrunk: false,
    });
    t.deepEqual(await allPacks(out), await allPacks(wlog));
    t.true(sameBytes(out, wlog), 'byte for byte the same wlog');

    // The same through walb-tool, on a fresh ldev.
    const ldev2 = await makeLdev(pbs, ring);
    const restore = await runTool(['wlog', 'restore', wlog, ldev2]);
    t.is(restore.code, 0, restore.stderr);
    t.regex(restore.stdout, new RegExp(`logs end at lsid ${g.endLsid}`));
    const out2 = tmp.name('out2.wlog');
    const extract = await runTool(['wlog', 'extract', ldev2, '-o', out2, '--json']);
    t.is(extract.code, 0, extract.stderr);
    t.like(JSON.parse(extract.stdout), { packs: g.packs, endLsid: g.endLsid, shrunk: false });
    t.true(sameBytes(out2, wlog));
  });
}

test('extract takes exactly the packs of [begin, end) and refuses an end inside a pack', async (t) => {
  const ldev = await makeLdev(512, 2000);
  const built = buildWlog(
    { pbs: 512, salt: 77, uuid: prngBytes(1, 16), beginLsid: 50 },
    [0, 1, 2, 3].map((i) => [{ kind: 'normal', offset: i * 8, ioSize: 2, data: prngBytes(i, 2 * LB) }]),
  );
  const wlog = tmp.name('four.wlog');
  fs.writeFileSync(wlog, built.bytes);
  await native.ldevRestore(wlog, ldev);
  const [, p1, p2] = built.packs;
  const out = tmp.name('mid.wlog');
  const x = await native.ldevExtract(ldev, out, { beginLsid: p1.lsid, endLsid: p2.nextLsid });
  t.like(x, { beginLsid: p1.lsid, endLsid: p2.nextLsid, packs: 2, shrunk: false });
  t.deepEqual(
    (await allPacks(out)).map((p) => p.lsid),
    [p1.lsid, p2.lsid],
  );
  await t.throwsAsync(
    native.ldevExtract(ldev, tmp.name('bad.wlog'), { beginLsid: p1.lsid, endLsid: p1.lsid + 1 }),
    {
      code: 'INVALID_ARGUMENT',
    },
  );
});

test('after a new format the old logs in the ring fail the new salt and the log reads as empty', async (t) => {
  const ldev = await makeLdev(512, 2000);
  const wlog = tmp.name('old.wlog');
  await native.wlogGen(wlog, { pbs: 512, deviceSize: 4096, amount: 128 << 10, seed: 81 });
  await native.ldevRestore(wlog, ldev);
  await native.formatLdev(ldev, { pbs: 512 }); // lsids back to 0, new salt; the ring is not cleared
  const out = tmp.name('empty.wlog');
  t.like(await native.ldevExtract(ldev, out, {}), { packs: 0, beginLsid: 0, endLsid: 0, shrunk: false });
  t.like(await native.wlogVerify(out), { packs: 0, endBlock: true });
});

test('restoring a wlog into an ldev whose ring it does not fit is refused as INVALID_ARGUMENT', async (t) => {
  const wlog = tmp.name('big.wlog');
  const g = await native.wlogGen(wlog, {
    pbs: 512,
    deviceSize: 4096,
    amount: 256 << 10,
    ringBufferSize: 5000,
    seed: 82,
  });
  // More logs than the ring holds.
  const small = await makeLdev(512, g.endLsid - g.beginLsid - 10);
  await t.throwsAsync(native.ldevRestore(wlog, small), { code: 'INVALID_ARGUMENT', message: /ring buffer/ });
  const r = await runTool(['wlog', 'restore', wlog, small]);
  t.is(r.code, 2, r.stderr);
  // Packs padded for another ring size: some record's data would cross this ring's end.
  const wrapped = tmp.name('wrapped.wlog');
  await native.wlogGen(wrapped, {
    pbs: 512,
    deviceSize: 4096,
    amount: 256 << 10,
    ringBufferSize: 0,
    lsid: 1990,
    maxIoSize: 64,
    seed: 83,
  });
  await t.throwsAsync(native.ldevRestore(wrapped, await makeLdev(512, 2000)), {
    code: 'INVALID_ARGUMENT',
    message: /ring-buffer end/,
  });
});

/** Restores a hand-built wlog, corrupts the data of record `bad` of its last pack in the ldev, extracts. */
async function tornLastPack(last: LogRecordSpec[], bad: number) {
  const pbs = 512;
  const salt = 0x600dcafe;
  const ring = 1000;
  const ldev = await makeLdev(pbs, ring);
  const first: LogRecordSpec[] = [{ kind: 'normal', offset: 100, ioSize: 3, data: prngBytes(50, 3 * LB) }];
  const built = buildWlog({ pbs, salt, uuid: prngBytes(51, 16), beginLsid: 900 }, [first, last]);
  const wlog = tmp.name('torn-src.wlog');
  fs.writeFileSync(wlog, built.bytes);
  await native.ldevRestore(wlog, ldev);
  const pack = built.packs[1];
  const rec = parseWlog(built.bytes).packs[1].records[bad];
  const at = (4096 / pbs + 2 + (rec.lsid % ring)) * pbs;
  const byte = readRange(ldev, at, 1);
  patchFile(ldev, at, Buffer.from([byte[0] ^ 0xff]));
  const out = tmp.name('torn.wlog');
  const x = await native.ldevExtract(ldev, out, {});
  return { built, pack, out, x, salt, pbs, first };
}

test('a torn last pack (bad data in its 2nd record) is shrunk to its first record on extract', async (t) => {
  const last: LogRecordSpec[] = [
    { kind: 'normal', offset: 10, ioSize: 2, data: prngBytes(60, 2 * LB) },
    { kind: 'normal', offset: 20, ioSize: 4, data: prngBytes(61, 4 * LB) },
    { kind: 'discard', offset: 40, ioSize: 8 },
    { kind: 'normal', offset: 30, ioSize: 1, data: prngBytes(62, LB) },
  ];
  const { built, pack, out, x, salt, pbs } = await tornLastPack(last, 1);
  t.true(x.shrunk);
  t.is(x.packs, 2);
  t.is(x.endLsid, pack.lsid + 1 + 2, 'the redo end follows the shrunk pack');
  const bytes = fs.readFileSync(out);
  const w = parseWlog(bytes);
  t.is(w.packs.length, 2);
  const p = w.packs[1];
  t.like(p, { lsid: pack.lsid, nRecords: 1, nPadding: 0, totalIoSize: 2 });
  const header = bytes.subarray(p.at, p.at + pbs);
  t.is(csum(header, salt), 0, 'the shrunk header is re-checksummed with the salt');
  t.true(
    header.subarray(24 + 32).every((b) => b === 0),
    'records 1.. are zeroed',
  );
  t.is(
    firstDiff(header, buildLogpack(pbs, salt, pack.lsid, [last[0]]).header),
    -1,
    'same as a pack built with record 0 only',
  );
  t.is(firstDiff(bytes.subarray(p.dataAt, p.end), pack.data.subarray(0, 2 * LB)), -1);
  t.is(p.end, bytes.length - pbs, 'then the end block');
  const intact = parseWlog(built.bytes).packs[1].at;
  t.is(
    firstDiff(bytes.subarray(0, intact), built.bytes.subarray(0, intact)),
    -1,
    'header and first pack as they were',
  );
  t.like(await native.wlogVerify(out), { packs: 2, endLsid: pack.lsid + 3 });
});

test('walb-tool wlog extract says when it shrank a torn pack', async (t) => {
  const last: LogRecordSpec[] = [
    { kind: 'normal', offset: 10, ioSize: 2, data: prngBytes(70, 2 * LB) },
    { kind: 'normal', offset: 20, ioSize: 2, data: prngBytes(71, 2 * LB) },
  ];
  const { x } = await tornLastPack(last, 1);
  t.true(x.shrunk);
  // Run the CLI on a fresh copy of the same situation.
  const pbs = 512;
  const ldev = await makeLdev(pbs, 1000);
  const built = buildWlog({ pbs, salt: 5, uuid: prngBytes(3, 16), beginLsid: 0 }, [last]);
  const wlog = tmp.name('cli-torn.wlog');
  fs.writeFileSync(wlog, built.bytes);
  await native.ldevRestore(wlog, ldev);
  const rec = parseWlog(built.bytes).packs[0].records[1];
  patchFile(ldev, (10 + rec.lsid) * pbs, Buffer.from('torn'));
  const out = tmp.name('cli-out.wlog');
  const r = await runTool(['wlog', 'extract', ldev, '-o', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /torn and shrunk/);
  t.like(await native.wlogVerify(out), { packs: 1, records: 1, endLsid: 3 });
});

test('a torn pack whose first record is bad is dropped whole on extract', async (t) => {
  const last: LogRecordSpec[] = [
    { kind: 'normal', offset: 10, ioSize: 2, data: prngBytes(80, 2 * LB) },
    { kind: 'normal', offset: 20, ioSize: 2, data: prngBytes(81, 2 * LB) },
  ];
  const { pack, out, x } = await tornLastPack(last, 0);
  t.true(x.shrunk);
  t.is(x.packs, 1);
  t.is(x.endLsid, pack.lsid, 'the redo end is the torn pack');
  t.like(await native.wlogVerify(out), { packs: 1, endLsid: pack.lsid, endBlock: true });
});

test('a shrunk pack keeps a padding record before the torn one', async (t) => {
  const last: LogRecordSpec[] = [
    { kind: 'normal', offset: 10, ioSize: 1, data: prngBytes(90, LB) },
    { kind: 'padding', ioSize: 2 },
    { kind: 'normal', offset: 20, ioSize: 2, data: prngBytes(91, 2 * LB) },
  ];
  const { pack, out, x, salt, pbs } = await tornLastPack(last, 2);
  t.true(x.shrunk);
  const bytes = fs.readFileSync(out);
  const p = parseWlog(bytes).packs[1];
  t.like(p, { nRecords: 2, nPadding: 1, totalIoSize: 3 });
  t.is(
    firstDiff(bytes.subarray(p.at, p.at + pbs), buildLogpack(pbs, salt, pack.lsid, last.slice(0, 2)).header),
    -1,
  );
  t.is(x.endLsid, pack.lsid + 4);
});
