// Log devices exchanged with WalB's own tools (walb-tools 1.0.19) on loop devices, at pbs 512 and 4096: an ldev
// formatted by either side's `wdevc format-ldev` is read, restored into and extracted by the other; and a wdev of
// walb-wdevd on an ldev formatted by WalB's wdevc leaves logs that WalB's wlog-cat and wlog-redo turn into its data.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { SuperSector } from '../../src/native';
import { P, RawClient } from '../nbd-client';
import { expectToolFailure, run } from '../processes';
import { copyImage, makeTempDir, prngBytes, removeDir, sparseFile } from '../temp-files';
import { oracle, oracleTest, sameBytes, statLines, tool, withLoop } from '../walb-oracle';
import { WDEVC, Wdevd } from '../wdevd-harness';

const MiB = 1 << 20;
const DEVICE = 4 * MiB;

const dirs: string[] = [];
test.after.always(() => dirs.forEach(removeDir));

function tempDir(prefix: string): string {
  const dir = makeTempDir(prefix);
  dirs.push(dir);
  return dir;
}

/** WalB's view of a super sector (`wldev-show -super`) against walb-tool's (`ldev show --json`). */
async function sameSuper(t: ExecutionContext, ldev: string): Promise<SuperSector> {
  const theirs = (await oracle(t, 'wldev-show', ['-super', ldev])).stdout;
  const ours = JSON.parse(await tool(t, ['ldev', 'show', ldev, '--json'])) as SuperSector;
  const n = statLines(theirs);
  t.deepEqual(
    {
      pbs: n.pbs,
      salt: n.salt,
      ringBufferSize: n.ringBufferSize,
      ringBufferOffset: n.ringBufferOffset,
      oldestLsid: n.oldestLsid,
      writtenLsid: n.writtenLsid,
      deviceSize: n.deviceSize,
      uuid: /uuid: ([0-9a-f]+)/.exec(theirs)?.[1],
      name: /name: (.*)/.exec(theirs)?.[1].trim(),
    },
    {
      pbs: ours.pbs,
      salt: ours.salt,
      ringBufferSize: ours.ringBufferSize,
      ringBufferOffset: ours.ringBufferOffset,
      oldestLsid: ours.oldestLsid,
      writtenLsid: ours.writtenLsid,
      deviceSize: ours.deviceSize,
      uuid: ours.uuid,
      name: ours.name,
    },
    `super sector of ${ldev} as WalB and walb-tool read it`,
  );
  return ours;
}

/** Formats `ldev` for `ddev` (both block devices) with WalB's wdevc or ours (through a walb-wdevd). */
async function formatLdev(
  t: ExecutionContext,
  by: 'theirs' | 'ours',
  ldev: string,
  ddev: string,
  dir: string,
) {
  if (by === 'theirs') {
    await oracle(t, 'wdevc', ['format-ldev', '-n', 'oracle', ldev, ddev]);
    return;
  }
  const d = new Wdevd(path.join(dir, 'wdevd'));
  try {
    await d.start();
    const socket = path.join(d.runDir, 'wdevd.sock');
    const r = await run(process.execPath, [
      WDEVC,
      'format-ldev',
      '--socket',
      socket,
      '-n',
      'ours',
      ldev,
      ddev,
    ]);
    if (r.code !== 0) t.fail(`wdevc format-ldev: ${r.stderr}`);
  } finally {
    await d.cleanup();
  }
}

for (const formatter of ['theirs', 'ours'] as const) {
  for (const pbs of [512, 4096]) {
    const who = formatter === 'theirs' ? "WalB's" : "walb-tool's";
    oracleTest(
      `log devices formatted by ${who} wdevc are read, restored into and extracted by the other side, pbs ${pbs}`,
      { loopDevices: true },
      async (t) => {
        const dir = tempDir('walb-oracle-ldev');
        const base = path.join(dir, 'base.img');
        fs.writeFileSync(base, prngBytes(pbs, DEVICE));
        const ddevFile = sparseFile(path.join(dir, 'ddev.img'), DEVICE);

        // One wlog from each side, each with its reference image redone by its own tool.
        const theirWlog = path.join(dir, 'theirs.wlog');
        await oracle(t, 'wlog-gen', ['-s', '4M', '-z', '512K', '-b', String(pbs), '--rand', '-o', theirWlog]);
        const theirImage = copyImage(base, path.join(dir, 'theirs.img'));
        await oracle(t, 'wlog-redo', ['-z', '-i', theirWlog, theirImage]);
        const ourWlog = path.join(dir, 'ours.wlog');
        await tool(t, [
          'wlog',
          'gen',
          '-o',
          ourWlog,
          ...['--size', '4M', '--amount', '512K', '--pbs', String(pbs), '--max-io', '64K'],
          ...[
            '--discard-ratio',
            '0.1',
            '--allzero-ratio',
            '0.1',
            '--ring',
            pbs === 512 ? '900' : '100',
            '--seed',
            String(pbs),
          ],
        ]);
        const ourImage = copyImage(base, path.join(dir, 'ours.img'));
        await tool(t, ['wlog', 'redo', ourWlog, ourImage, '--discard', 'zero']);

        // The other side restores its wlog into this side's ldev; this side extracts it.
        const restoredBy = formatter === 'theirs' ? 'ours' : 'theirs';
        for (const restorer of [restoredBy, formatter]) {
          const ldevFile = sparseFile(path.join(dir, `${restorer}-restored.ldev`), 8 * MiB);
          const extracted = path.join(dir, `${restorer}-restored-extracted.wlog`);
          await withLoop(ddevFile, pbs, (ddev) =>
            withLoop(ldevFile, pbs, async (ldev) => {
              await formatLdev(t, formatter, ldev, ddev, dir);
              const sup = await sameSuper(t, ldev);
              t.is(sup.pbs, pbs);
              if (restorer === 'theirs') await oracle(t, 'wlog-restore', [ldev], { stdin: theirWlog });
              else await tool(t, ['wlog', 'restore', ourWlog, ldev]);
              if (restorer === 'theirs') await tool(t, ['wlog', 'extract', ldev, '-o', extracted]);
              else await oracle(t, 'wlog-cat', [ldev, '-o', extracted]);
            }),
          );
          const image = copyImage(base, path.join(dir, `${restorer}-restored.img`));
          if (restorer === 'theirs') await tool(t, ['wlog', 'redo', extracted, image, '--discard', 'zero']);
          else await oracle(t, 'wlog-redo', ['-z', '-i', extracted, image]);
          const what = `${restorer === 'theirs' ? "WalB's" : 'our'} wlog restored into a ${formatter}-formatted ldev and extracted by the other side`;
          sameBytes(t, extracted, restorer === 'theirs' ? theirWlog : ourWlog, what);
          sameBytes(t, image, restorer === 'theirs' ? theirImage : ourImage, `redo of ${what}`);
        }
      },
    );
  }
}

/** What `walb-tool wlog show --json` says of the records (lsids in physical blocks, sizes in logical ones). */
interface WlogShow {
  packs: { records: { kind: string; lsid: number | string; ioSize: number }[] }[];
}

// pbs 512 only: at pbs 4096 WalB's wlog-restore fails there ("Padding size must be pbs-aligned", docs/formats.md §8).
for (const pbs of [512]) {
  oracleTest(
    `a wlog whose records would cross the ring end: WalB's wlog-restore pads it there, walb-tool extracts what wlog-cat does, walb-tool's restore refuses it, pbs ${pbs}`,
    { loopDevices: true },
    async (t) => {
      const dir = tempDir('walb-oracle-ring');
      const ddevFile = sparseFile(path.join(dir, 'ddev.img'), DEVICE);
      const ldevFile = sparseFile(path.join(dir, 'ring.ldev'), 8 * MiB);
      const base = path.join(dir, 'base.img');
      fs.writeFileSync(base, prngBytes(pbs + 3, DEVICE));
      await withLoop(ddevFile, pbs, (ddev) =>
        withLoop(ldevFile, pbs, async (ldev) => {
          await formatLdev(t, 'theirs', ldev, ddev, dir);
          const { ringBufferSize } = await sameSuper(t, ldev);
          const wlog = path.join(dir, 'crossing.wlog');
          // A record of WalB's random wlog may end exactly at the ring end, or the one crossing it may be a
          // padding or a discard, which carry no data and so are placed anywhere: start a little earlier until
          // the data of a normal record crosses it.
          const crosses = async () =>
            (JSON.parse(await tool(t, ['wlog', 'show', wlog, '--json'])) as WlogShow).packs.some((p) =>
              p.records.some(
                (r) =>
                  r.kind === 'normal' &&
                  Number(r.lsid) < ringBufferSize &&
                  Number(r.lsid) + Math.ceil((r.ioSize * 512) / pbs) > ringBufferSize,
              ),
            );
          let crossing = false;
          for (let back = 20; back < 28 && !crossing; back++) {
            await oracle(t, 'wlog-gen', [
              ...['-s', '4M', '-z', '512K', '-b', String(pbs)],
              ...['--lsid', String(ringBufferSize - back), '--rand', '-o', wlog],
            ]);
            crossing = await crosses();
          }
          t.true(crossing, 'a pack of the wlog crosses the ring end');

          // Ours keeps every lsid, so a record that would cross the ring end cannot be placed (docs/formats.md §8).
          await expectToolFailure(t, ['wlog', 'restore', wlog, ldev], {
            code: 'INVALID_ARGUMENT',
            exit: 2,
            message: /would cross the ring-buffer end/,
          });

          await oracle(t, 'wlog-restore', [ldev], { stdin: wlog });
          const theirs = path.join(dir, 'theirs.wlog');
          const ours = path.join(dir, 'ours.wlog');
          await oracle(t, 'wlog-cat', [ldev, '-o', theirs]);
          await tool(t, ['wlog', 'extract', ldev, '-o', ours]);
          sameBytes(t, ours, theirs, 'logs across the ring end as walb-tool and WalB extract them');
          const stat = statLines((await oracle(t, 'wlog-show', ['-stat', theirs])).stdout);
          t.true(
            stat.reallyEndLsid > ringBufferSize,
            `the restored logs run past the ring end: ${JSON.stringify(stat)}`,
          );

          const want = copyImage(base, path.join(dir, 'want.img'));
          await oracle(t, 'wlog-redo', ['-z', '-i', wlog, want]);
          const got = copyImage(base, path.join(dir, 'got.img'));
          await tool(t, ['wlog', 'redo', ours, got, '--discard', 'zero']);
          sameBytes(t, got, want, 'redo of the extracted logs');
        }),
      );
    },
  );
}

for (const pbs of [512, 4096]) {
  oracleTest(
    `a wdev of walb-wdevd on an ldev formatted by WalB's wdevc leaves logs that WalB's wlog-cat and wlog-redo replay onto its data, pbs ${pbs}`,
    { loopDevices: true },
    async (t) => {
      const dir = tempDir('walb-oracle-wdev');
      const ldev = sparseFile(path.join(dir, 'w.ldev'), 8 * MiB);
      const ddev = path.join(dir, 'w.ddev');
      fs.writeFileSync(ddev, prngBytes(pbs + 7, DEVICE));
      const start = copyImage(ddev, path.join(dir, 'start.img'));
      await withLoop(ddev, pbs, (dd) => withLoop(ldev, pbs, (ld) => formatLdev(t, 'theirs', ld, dd, dir)));

      const d = new Wdevd(path.join(dir, 'wdevd'));
      try {
        await d.start();
        await d.client.createWdev({ ldev, ddev, name: 'oracle' });
        const { c } = await RawClient.go(d.nbdSocket, 'oracle');
        let h = 1;
        for (let i = 0; i < 200; i++) {
          const len = pbs * (1 + crypto.randomInt(pbs === 512 ? 16 : 4)); // well inside the ring: nothing moves the oldest lsid
          const off = pbs * crypto.randomInt((DEVICE - len) / pbs);
          const kind = i % 10;
          if (kind === 3) t.is(await c.simple(P.NBD_CMD_TRIM, h++, off, len), 0);
          else if (kind === 6) t.is(await c.simple(P.NBD_CMD_WRITE_ZEROES, h++, off, len), 0);
          else t.is(await c.writeAt(h++, off, crypto.randomBytes(len)), 0);
        }
        t.is(await c.simple(P.NBD_CMD_FLUSH, h++, 0, 0), 0);
        c.destroy();
        t.is(await d.stop(), 0, 'walb-wdevd stops cleanly');
      } finally {
        await d.cleanup();
      }

      const wlog = path.join(dir, 'w.wlog');
      const ourWlog = path.join(dir, 'w-ours.wlog');
      await withLoop(ldev, pbs, async (ld) => {
        await sameSuper(t, ld);
        await oracle(t, 'wlog-cat', [ld, '-o', wlog]);
        await tool(t, ['wlog', 'extract', ld, '-o', ourWlog]);
      });
      sameBytes(t, ourWlog, wlog, "walb-tool's extract of the wdev's logs is WalB's wlog-cat");
      const stat = statLines((await oracle(t, 'wlog-show', ['-stat', wlog])).stdout);
      t.true(stat.nrPacks > 0 && stat.discardLb > 0, `WalB reads the wdev's logs: ${JSON.stringify(stat)}`);
      await oracle(t, 'wlog-redo', ['-z', '-i', wlog, start]);
      sameBytes(t, start, ddev, "WalB's redo of the wdev's logs onto its starting data");
    },
  );
}
