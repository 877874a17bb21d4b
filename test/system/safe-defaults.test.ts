// Safe defaults of the real binaries (docs/operations.md, "Safe defaults"): a server refuses to listen in plaintext on
// an address of this machine other than loopback, walb-wdevd refuses NBD over TCP on 0.0.0.0, each with a CONFIG
// error naming the key that would allow it and exit code 2, before binding anything; walb-wdevd's socket files get
// the configured mode and group before it answers.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, run } from '../processes';
import { tempArea } from '../temp-files';
import { Wdevd } from '../wdevd-harness';

const area = tempArea('safe-defaults');
test.after.always(() => area.cleanup());

const bin = (name: string) => path.join(ROOT, 'dist', 'src', 'bin', `${name}.js`);

/** An IPv4 address of this machine other than loopback; 0.0.0.0 (every address) when it has none. */
function nonLoopbackAddress(): string {
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal);
  return external?.address ?? '0.0.0.0';
}

test('a server without tls refuses a listen address other than loopback: CONFIG naming plaintextAllowRemote, exit 2', async (t) => {
  const host = nonLoopbackAddress();
  for (const server of ['walb-archive', 'walb-proxy']) {
    const r = await run(process.execPath, [
      bin(server),
      '--listen',
      `${host}:0`,
      '--data-dir',
      area.name(server),
    ]);
    t.is(r.code, 2, `${server}: ${r.stderr}`);
    t.regex(
      r.stderr,
      new RegExp(`listen: ${host}:0 is not a loopback address .*plaintextAllowRemote.*\\[CONFIG\\]`),
    );
  }
  const bulk = await run(process.execPath, [
    bin('walb-archive'),
    '--bulk-listen',
    `${host}:0`,
    '--data-dir',
    area.name('bulk'),
  ]);
  t.is(bulk.code, 2, bulk.stderr);
  t.regex(bulk.stderr, /bulkListen: .* is not a loopback address .*plaintextAllowRemote/);
});

test('walb-wdevd refuses NBD over TCP on 0.0.0.0 without nbd.tcpAllowRemote: CONFIG, exit 2, no socket made', async (t) => {
  const dir = area.name('nbd-tcp');
  const r = await run(process.execPath, [
    bin('walb-wdevd'),
    '--run-dir',
    path.join(dir, 'run'),
    '--state-dir',
    path.join(dir, 'state'),
    '--nbd-tcp',
    '0.0.0.0:0',
  ]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /nbd\.tcp: 0\.0\.0\.0:0 is not a loopback address;.*nbd\.tcpAllowRemote.*\[CONFIG\]/);
  t.false(fs.existsSync(path.join(dir, 'run', 'wdevd.sock')));
});

test("walb-wdevd's control and NBD sockets have the configured mode and group once it answers", async (t) => {
  // Root may give a file any group; anyone else, its own.
  const group = process.getuid?.() === 0 ? 'daemon' : String(process.getgid!());
  const gid = Number((await run('getent', ['group', group])).stdout.split(':')[2]);
  const config = area.name('wdevd.json');
  fs.writeFileSync(config, JSON.stringify({ sockets: { mode: '0640', group } }));
  for (const [name, extra, mode, owner] of [
    ['default', [], 0o660, process.getgid!()],
    ['configured', ['--config', config], 0o640, gid],
  ] as const) {
    const wdevd = new Wdevd(area.name(name), [...extra]);
    try {
      await wdevd.start();
      for (const socket of [wdevd.nbdSocket, path.join(wdevd.runDir, 'wdevd.sock')]) {
        const st = fs.statSync(socket);
        t.true(st.isSocket());
        t.is(st.mode & 0o7777, mode, `${name}: ${socket} mode ${(st.mode & 0o7777).toString(8)}`);
        t.is(st.gid, owner, `${name}: ${socket} group`);
      }
    } finally {
      await wdevd.cleanup();
    }
  }
});
