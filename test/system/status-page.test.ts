// The status page in a real browser (docs/operations.md, "Status page"): a running group whose volume's log
// overflowed while its storage was down, `walbc serve-status` as a process on a loopback port, and headless
// Chromium reading the page after its script ran (the DOM) and drawing it (a screenshot).
import test from 'ava';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Group } from '../group-fixture';
import { P } from '../nbd-client';
import { run } from '../processes';
import { WALBC, freePort } from '../system-harness';
import { waitUntil } from '../waiting';

/** Chromium from PATH (scripts/setup.sh installs Debian's package), or undefined. */
function findChromium(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const file = path.join(dir, 'chromium');
    if (fs.existsSync(file)) return file;
  }
  return undefined;
}

/** Headless Chromium on `url` with a profile of its own under `dir`. */
function chromium(bin: string, dir: string, url: string, args: string[]) {
  return run(
    bin,
    [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      `--user-data-dir=${path.join(dir, 'chromium-profile')}`,
      ...args,
      url,
    ],
    { timeoutMs: 120_000 },
  );
}

test.serial(
  'the status page shows an overflowed volume in headless Chromium: its servers, the storage Stopped, "overflow" among the problems, a screenshot',
  async (t) => {
    const bin = findChromium();
    if (!bin) {
      t.fail(
        'chromium is not installed: run `bash scripts/setup.sh` as root, or `apt-get install chromium` (Debian)',
      );
      return;
    }
    const g = await Group.start(t, 'status-page', { ldevBytes: 4 << 20 });
    let page: ReturnType<typeof spawn> | undefined;
    try {
      const { ok } = g;
      await ok('init-vol', 'ovf', 'w0');
      await ok('full-backup', 'ovf', '--wait');
      // 12 MiB of writes into a 4 MiB log while the storage is down: the wdev overflows on its own.
      await g.storages[0].kill();
      const c = await g.nbd();
      for (let i = 0; i < 12; i++)
        t.is(await c.writeAt(i + 1, (i % 6) << 20, crypto.randomBytes(1 << 20)), 0);
      t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
      await g.storages[0].start();
      await waitUntil(async () => (await ok('get-state', 'ovf', 's0')) === 'Stopped', 'storage Stopped');

      const listen = `127.0.0.1:${await freePort()}`;
      page = spawn(
        process.execPath,
        [WALBC, 'serve-status', '--listen', listen, '--interval', '1', '-l', g.layout],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const proc = page;
      let stdout = '';
      let stderr = '';
      proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitUntil(() => {
        if (proc.exitCode !== null) throw new Error(`walbc serve-status exited: ${stderr}`);
        return stdout.includes('\n');
      }, 'walbc serve-status listening');
      t.is(stdout, `status page on http://${listen}/\n`);
      const url = `http://${listen}/`;

      const json = (await (await fetch(`${url}status.json`)).json()) as {
        ok: boolean;
        problems: string[];
        rows: { server: string; archive?: { newestRestorable: unknown; recoveryPointAgeSec: number } }[];
      };
      t.false(json.ok);
      t.true(json.problems.includes('the log of ovf on s0 overflowed'), json.problems.join('; '));
      const a0 = json.rows.find((r) => r.server === 'a0')!.archive!;
      t.not(a0.newestRestorable, null, 'the full backup is restorable');
      t.true(a0.recoveryPointAgeSec >= 0);

      const dom = await chromium(bin, g.dir, url, ['--virtual-time-budget=3000', '--dump-dom']);
      t.is(dom.code, 0, dom.stderr);
      t.regex(dom.stdout, /<section class="volume" data-volume="ovf"><h2>Volume ovf<\/h2>/);
      for (const server of ['s0', 'p0', 'a0']) t.regex(dom.stdout, new RegExp(`data-server="${server}"`));
      t.regex(
        dom.stdout,
        /<tr class="bad" data-server="s0"><td>s0<\/td><td>storage<\/td><td class="state">Stopped<\/td>/,
      );
      t.regex(
        dom.stdout,
        /<section id="problems" class="bad"><h2>Needs an operator \(\d+\)<\/h2><ul>.*<li>the log of ovf on s0 overflowed<\/li>/s,
      );
      t.regex(dom.stdout, /<dt>recovery point age<\/dt><dd>\d+(s|m\d\ds)<\/dd>/);
      t.regex(dom.stdout, /<p id="stale" hidden="">/, 'the page read itself again without an error');

      const png = path.join(g.dir, 'status.png');
      const shot = await chromium(bin, g.dir, url, [`--screenshot=${png}`, '--window-size=1200,900']);
      t.is(shot.code, 0, shot.stderr);
      const bytes = fs.readFileSync(png);
      t.deepEqual(bytes.subarray(0, 8), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), 'PNG');
      t.is(bytes.toString('latin1', 12, 16), 'IHDR');
      t.is(bytes.readUInt32BE(16), 1200, 'width');
      t.is(bytes.readUInt32BE(20), 900, 'height');
      t.true(bytes.length > 20_000, `a drawn page, not a blank one: ${bytes.length} bytes`);

      proc.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
      t.is(code, 0, `walbc serve-status ends cleanly on SIGTERM: ${stderr}`);
      page = undefined;
    } finally {
      page?.kill('SIGKILL');
      await g.cleanup();
    }
  },
);
