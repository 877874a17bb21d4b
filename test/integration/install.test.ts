// scripts/install.sh into a temporary root (--root), as docs/operations.md "Install" describes it: the program,
// the commands, the configs, the walb user, the state directories and the units land where they should; the
// installed program runs on its own with the installed configs; the installed units pass systemd-analyze verify
// inside that root and keep their security score; an operator's config survives a reinstall; --uninstall removes
// what the script wrote and keeps /etc/walb and /var/lib/walb, which --purge removes too.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, run, type RunResult } from '../processes';
import { freePort } from '../system-harness';
import { makeTempDir, removeDir } from '../temp-files';
import { waitUntil } from '../waiting';

const INSTALL = path.join(ROOT, 'scripts', 'install.sh');
const NODE = fs.realpathSync(process.execPath);
const ROLES = ['wdevd', 'storage', 'proxy', 'archive'];
const BINARIES = ['walb-wdevd', 'wdevc', 'walb-storage', 'walb-proxy', 'walb-archive', 'walbc', 'walb-tool'];
const PREFIX = '/opt/walb-ts';
const UNITDIR = '/usr/local/lib/systemd/system';

const roots: string[] = [];
test.after.always(() => roots.forEach(removeDir));

/**
 * An empty root with what `systemd-analyze verify --root` resolves outside our units: the distribution's targets
 * (sysinit.target, ...) and the Node.js the units run.
 */
function newRoot(): string {
  const root = makeTempDir('install-root');
  roots.push(root);
  fs.mkdirSync(path.join(root, 'usr', 'lib', 'systemd'), { recursive: true });
  fs.cpSync('/usr/lib/systemd/system', path.join(root, 'usr', 'lib', 'systemd', 'system'), {
    recursive: true,
  });
  const node = path.join(root, NODE);
  fs.mkdirSync(path.dirname(node), { recursive: true });
  try {
    fs.linkSync(NODE, node);
  } catch {
    fs.copyFileSync(NODE, node);
    fs.chmodSync(node, 0o755);
  }
  return root;
}

function install(root: string, ...args: string[]): Promise<RunResult> {
  return run('bash', [INSTALL, '--root', root, '--node', NODE, ...args], { timeoutMs: 300_000 });
}

const inRoot = (root: string, p: string) => path.join(root, p);

/** The uid of a user in the root's /etc/passwd, or undefined. */
function uidIn(root: string, user: string): number | undefined {
  const passwd = inRoot(root, '/etc/passwd');
  if (!fs.existsSync(passwd)) return undefined;
  const line = fs
    .readFileSync(passwd, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  return line === undefined ? undefined : Number(line.split(':')[2]);
}

/** Starts an installed daemon with its installed config (paths and port moved into the test), then stops it. */
async function startAndStop(root: string, binary: string, args: string[]): Promise<string> {
  const p = spawn(NODE, [inRoot(root, `${PREFIX}/dist/src/bin/${binary}.js`), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await waitUntil(
      () => {
        if (p.exitCode !== null) throw new Error(`${binary} exited with ${p.exitCode}: ${stderr}`);
        return stderr.includes('"event":"started"');
      },
      () => `${binary} to start: ${stderr}`,
    );
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    if ((await exited) !== 0) throw new Error(`${binary} did not stop cleanly: ${stderr}`);
    return stderr;
  } finally {
    p.kill('SIGKILL');
  }
}

test.serial(
  'install puts every piece in place, and the installed program runs with the installed configs',
  async (t) => {
    const root = newRoot();
    const r = await install(root);
    t.is(r.code, 0, r.stderr);

    for (const f of [
      'package.json',
      'dist/src/bin/walb-storage.js',
      'build/Release/walb_native.node',
      'build/Release/walb_bulk_native.node',
      'proto/walb/v1/storage.proto',
      'docs/operations.md',
      'docs/wdev.md',
      'node_modules/@grpc/grpc-js/package.json',
      'node_modules/convict/package.json',
    ])
      t.true(fs.existsSync(inRoot(root, `${PREFIX}/${f}`)), f);
    for (const dev of ['ava', 'typescript', 'eslint', 'cmake-js'])
      t.false(fs.existsSync(inRoot(root, `${PREFIX}/node_modules/${dev}`)), `development dependency ${dev}`);
    t.false(fs.existsSync(inRoot(root, `${PREFIX}/dist/test`)), 'the tests stay in the checkout');

    for (const bin of BINARIES) {
      const wrapper = inRoot(root, `/usr/local/bin/${bin}`);
      t.is(fs.statSync(wrapper).mode & 0o777, 0o755, bin);
      // walb-tool is a native program; the others run their entry point with the chosen Node.js.
      const installed = inRoot(
        root,
        bin === 'walb-tool' ? `${PREFIX}/build/Release/walb-tool` : `${PREFIX}/dist/src/bin/${bin}.js`,
      );
      const command =
        bin === 'walb-tool'
          ? `${PREFIX}/build/Release/walb-tool`
          : `${NODE} ${PREFIX}/dist/src/bin/${bin}\\.js`;
      t.regex(fs.readFileSync(wrapper, 'utf8'), new RegExp(`^exec ${command} "\\$@"$`, 'm'));
      const version =
        bin === 'walb-tool' ? await run(installed, ['--version']) : await run(NODE, [installed, '--version']);
      t.is(version.code, 0, `${bin} --version from the installed tree: ${version.stderr}`);
    }

    for (const name of [...ROLES, 'layout'])
      t.is(
        fs.readFileSync(inRoot(root, `/etc/walb/${name}.json`), 'utf8'),
        fs.readFileSync(path.join(ROOT, 'config', `${name}.example.json`), 'utf8'),
        name,
      );

    const walb = uidIn(root, 'walb');
    t.truthy(walb, 'the walb user is in the root');
    t.regex(
      fs.readFileSync(inRoot(root, '/etc/passwd'), 'utf8'),
      /^walb:x:\d+:\d+:.*:\/var\/lib\/walb:\/usr\/sbin\/nologin$/m,
    );
    for (const role of ROLES) {
      const st = fs.statSync(inRoot(root, `/var/lib/walb/${role}`));
      t.is(st.mode & 0o777, 0o750, role);
      t.is(st.uid, role === 'proxy' || role === 'archive' ? walb! : 0, `owner of /var/lib/walb/${role}`);
    }

    for (const role of ROLES) {
      const unit = fs.readFileSync(inRoot(root, `${UNITDIR}/walb-${role}.service`), 'utf8');
      t.regex(
        unit,
        new RegExp(
          `^ExecStart=${NODE} ${PREFIX}/dist/src/bin/walb-${role}\\.js --config /etc/walb/${role}\\.json$`,
          'm',
        ),
      );
      t.regex(unit, /^Type=notify$/m);
    }

    // The installed program with the installed configs: only the addresses and directories move into the test.
    const dir = makeTempDir('install-run');
    roots.push(dir);
    const conf = (role: string) => ['--config', inRoot(root, `/etc/walb/${role}.json`)];
    const wdevdArgs = ['--run-dir', path.join(dir, 'run'), '--state-dir', path.join(dir, 'wdevd')];
    const wdevd = spawn(
      NODE,
      [inRoot(root, `${PREFIX}/dist/src/bin/walb-wdevd.js`), ...conf('wdevd'), ...wdevdArgs],
      {
        stdio: 'ignore',
      },
    );
    try {
      await waitUntil(() => fs.existsSync(path.join(dir, 'run', 'wdevd.sock')), 'walb-wdevd control socket');
      const at = async () => `127.0.0.1:${await freePort()}`;
      const wdevdSocket = ['--wdevd-socket', path.join(dir, 'run', 'wdevd.sock')];
      for (const [binary, args] of [
        [
          'walb-storage',
          [...conf('storage'), '--listen', await at(), '--data-dir', path.join(dir, 's'), ...wdevdSocket],
        ],
        ['walb-proxy', [...conf('proxy'), '--listen', await at(), '--data-dir', path.join(dir, 'p')]],
        ['walb-archive', [...conf('archive'), '--listen', await at(), '--data-dir', path.join(dir, 'a')]],
      ] as const)
        t.regex(await startAndStop(root, binary, [...args]), /"event":"stopped"/, binary);
    } finally {
      const exited = new Promise((r) => wdevd.once('exit', r));
      wdevd.kill('SIGTERM');
      await exited;
    }
  },
);

test.serial(
  'the installed units pass systemd-analyze verify inside the root and keep their security score',
  async (t) => {
    const root = newRoot();
    t.is((await install(root)).code, 0);
    const units = ROLES.map((role) => `walb-${role}.service`);
    const verify = await run('systemd-analyze', ['verify', `--root=${root}`, ...units]);
    t.is(verify.code, 0, verify.stderr);
    t.notRegex(verify.stderr, /error|invalid|unknown|not found|not executable/i, verify.stderr);

    // The score of docs/operations.md "Install": 10 is unconfined; every unit stays below 2.
    for (const unit of units) {
      const security = await run('systemd-analyze', ['security', '--offline=yes', `--root=${root}`, unit]);
      const score = /Overall exposure level for \S+: ([\d.]+)/.exec(security.stdout);
      t.truthy(score, `${unit}: ${security.stdout.slice(-500)} ${security.stderr}`);
      t.true(Number(score![1]) < 2, `${unit} exposure ${score![1]}`);
    }
  },
);

test.serial("a reinstall keeps an operator's config and brings back a missing one", async (t) => {
  const root = newRoot();
  t.is((await install(root)).code, 0);
  const proxyConf = inRoot(root, '/etc/walb/proxy.json');
  const edited = fs.readFileSync(proxyConf, 'utf8').replace('"p0"', '"p7"');
  fs.writeFileSync(proxyConf, edited);
  fs.rmSync(inRoot(root, '/etc/walb/archive.json'));

  const again = await install(root);
  t.is(again.code, 0, again.stderr);
  t.is(fs.readFileSync(proxyConf, 'utf8'), edited);
  t.true(again.stderr.includes('kept /etc/walb/proxy.json'), again.stderr);
  t.true(fs.existsSync(inRoot(root, '/etc/walb/archive.json')));
  t.false(fs.existsSync(inRoot(root, `${PREFIX}.new`)), 'no staging directory left');
  t.false(fs.existsSync(inRoot(root, `${PREFIX}.old`)), 'no previous version left');
});

test.serial(
  '--roles wdevd,storage installs only their units, configs and directories, and no walb user',
  async (t) => {
    const root = newRoot();
    const r = await install(root, '--roles', 'wdevd,storage');
    t.is(r.code, 0, r.stderr);
    t.deepEqual(fs.readdirSync(inRoot(root, UNITDIR)).sort(), ['walb-storage.service', 'walb-wdevd.service']);
    t.deepEqual(fs.readdirSync(inRoot(root, '/etc/walb')).sort(), [
      'layout.json',
      'storage.json',
      'wdevd.json',
    ]);
    t.deepEqual(fs.readdirSync(inRoot(root, '/var/lib/walb')).sort(), ['storage', 'wdevd']);
    t.is(uidIn(root, 'walb'), undefined);
    t.false(fs.existsSync(inRoot(root, '/usr/local/lib/sysusers.d/walb-ts.conf')));

    const bad = await install(root, '--roles', 'wdevd,mirror');
    t.is(bad.code, 1);
    t.regex(bad.stderr, /unknown role 'mirror'/);
  },
);

test.serial('a prefix that holds something else is neither replaced nor removed', async (t) => {
  const root = newRoot();
  const other = inRoot(root, '/usr/local/share/keep');
  fs.mkdirSync(path.dirname(other), { recursive: true });
  fs.writeFileSync(other, 'not ours');
  const r = await install(root, '--prefix', '/usr/local');
  t.is(r.code, 1);
  t.regex(r.stderr, /usr\/local exists and holds no walb-ts/);
  const u = await install(root, '--uninstall', '--prefix', '/usr/local');
  t.is(u.code, 0, u.stderr);
  t.is(fs.readFileSync(other, 'utf8'), 'not ours');
});

test.serial(
  'a command of the same name that the script did not write is neither replaced nor removed',
  async (t) => {
    const root = newRoot();
    const foreign = inRoot(root, '/usr/local/bin/walbc');
    fs.mkdirSync(path.dirname(foreign), { recursive: true });
    fs.writeFileSync(foreign, '#!/bin/sh\necho another walbc\n');
    const r = await install(root);
    t.is(r.code, 1);
    t.regex(r.stderr, /walbc exists and was not written by this script/);
    t.false(fs.existsSync(inRoot(root, PREFIX)), 'nothing installed');
    t.false(fs.existsSync(inRoot(root, '/usr/local/bin/walb-wdevd')), 'no other command written');
    const u = await install(root, '--uninstall');
    t.is(u.code, 0, u.stderr);
    t.is(fs.readFileSync(foreign, 'utf8'), '#!/bin/sh\necho another walbc\n');
  },
);

test.serial(
  '--uninstall removes what install wrote and keeps /etc/walb and /var/lib/walb; --purge removes those',
  async (t) => {
    const root = newRoot();
    t.is((await install(root)).code, 0);
    const data = inRoot(root, '/var/lib/walb/archive/vol0.img');
    fs.writeFileSync(data, 'backup');
    const enable = await run('systemctl', [`--root=${root}`, 'enable', 'walb-proxy.service']);
    t.is(enable.code, 0, enable.stderr);
    const wanted = inRoot(root, '/etc/systemd/system/multi-user.target.wants/walb-proxy.service');
    // The link points into the root's own /usr: lstat, not exists, which would follow it on this host.
    t.true(fs.lstatSync(wanted, { throwIfNoEntry: false })?.isSymbolicLink(), 'enabled');

    const u = await install(root, '--uninstall');
    t.is(u.code, 0, u.stderr);
    t.false(fs.existsSync(inRoot(root, PREFIX)));
    for (const bin of BINARIES) t.false(fs.existsSync(inRoot(root, `/usr/local/bin/${bin}`)), bin);
    t.deepEqual(fs.readdirSync(inRoot(root, UNITDIR)), []);
    t.is(fs.lstatSync(wanted, { throwIfNoEntry: false }), undefined, 'disabled: no link left');
    t.false(fs.existsSync(inRoot(root, '/usr/local/lib/sysusers.d/walb-ts.conf')));
    t.false(fs.existsSync(inRoot(root, '/usr/local/lib/tmpfiles.d/walb-ts.conf')));
    t.true(fs.existsSync(inRoot(root, '/etc/walb/storage.json')), 'configs kept');
    t.is(fs.readFileSync(data, 'utf8'), 'backup', 'data kept');
    t.truthy(uidIn(root, 'walb'), 'the walb user stays');

    const purge = await install(root, '--uninstall', '--purge');
    t.is(purge.code, 0, purge.stderr);
    t.false(fs.existsSync(inRoot(root, '/etc/walb')));
    t.false(fs.existsSync(inRoot(root, '/var/lib/walb')));
  },
);
