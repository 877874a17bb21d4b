// Mutual TLS across the group (docs/servers.md §3.9): storage, proxy and archive configured with a CA, a certificate and
// a key; walbc with the same in its layout. The whole loop works over TLS (full backup, wlogs, wdiffs, restore
// equal to the device); a controller without a certificate, or with one from another CA, is refused.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, run } from '../processes';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { ServerProc, freePort, walbcOn } from '../system-harness';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 8 << 20;

/** A CA and one certificate it signs, valid for 127.0.0.1 as server and as client. */
async function makePki(dir: string, name: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (x: string) => path.join(dir, `${name}-${x}`);
  const ssl = async (...args: string[]) => {
    const r = await run('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
    '-days',
    '2',
    '-subj',
    `/CN=${name}-ca`,
  );
  await ssl('req', ...ec, '-keyout', f('node.key'), '-out', f('node.csr'), '-subj', `/CN=${name}-node`);
  fs.writeFileSync(
    f('ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  await ssl(
    'x509',
    '-req',
    '-in',
    f('node.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('node.pem'),
    '-days',
    '2',
    '-extfile',
    f('ext.cnf'),
  );
  return { ca: f('ca.pem'), cert: f('node.pem'), key: f('node.key') };
}

test.serial(
  'the group over mutual TLS: backup and restore work; controllers without the CA are refused',
  async (t) => {
    const dir = makeTempDir('tls');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const servers: ServerProc[] = [];
    try {
      const tls = await makePki(dir, 'group');
      const rogue = await makePki(dir, 'rogue');
      const config = path.join(dir, 'tls.json');
      fs.writeFileSync(config, JSON.stringify({ tls }));
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'sec', { ldevBytes: 16 << 20, ddevBytes: SIZE, pbs: 4096 });
      await wdevd.client.createWdev({ ...files, name: 'sec' });
      const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort(), ['--config', config]);
      const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort(), ['--config', config]);
      servers.push(a0, p0);
      await Promise.all([a0.start(), p0.start()]);
      const s0 = new ServerProc('walb-storage', path.join(dir, 's0'), await freePort(), [
        '--config',
        config,
        '--archive',
        a0.address,
        '--proxy',
        p0.address,
        '--wdevd-socket',
        path.join(wdevd.runDir, 'wdevd.sock'),
      ]);
      servers.push(s0);
      await s0.start();
      const group = {
        storages: [{ id: 's0', address: s0.address }],
        proxies: [{ id: 'p0', address: p0.address }],
        archives: [{ id: 'a0', address: a0.address }],
      };
      const layout = (name: string, extra: object) => {
        const file = path.join(dir, `${name}.json`);
        fs.writeFileSync(file, JSON.stringify({ ...group, ...extra }));
        return file;
      };
      const secure = layout('secure', { tls });
      const { ok } = walbcOn(t, secure);

      await ok('init-vol', 'sec', 'sec');
      const { c } = await RawClient.go(wdevd.nbdSocket, 'sec');
      t.is(await c.writeAt(1, 0, crypto.randomBytes(1 << 20), P.NBD_CMD_FLAG_FUA), 0);
      await ok('full-backup', 'sec', '--wait');
      // The bytes took the archive's bulk port, over TLS too.
      t.regex(a0.stderr, /"event":"full-sync-done","volume":"sec","bytes":1048576,"path":"bulk"/);
      t.is(await c.writeAt(1, 1 << 20, crypto.randomBytes(2 << 20), P.NBD_CMD_FLAG_FUA), 0);
      const gid = await ok('snapshot', 'sec', '--wait');
      const restored = JSON.parse(await ok('restore', 'sec', gid, '--wait', '--json')) as { result: string };
      const device = Buffer.alloc(SIZE);
      for (let off = 0, h = 10; off < SIZE; off += 1 << 20, h++)
        (await c.readAt(h, off, 1 << 20)).data.copy(device, off);
      t.true(fs.readFileSync(restored.result).equals(device), 'over TLS the snapshot restores to the device');
      c.destroy();

      for (const [name, extra] of [
        ['plaintext', {}],
        ['rogue', { tls: rogue }],
      ] as const) {
        const r = await walbcOn(t, layout(name, extra)).run('get-state', 'sec', 's0');
        t.not(r.code, 0, `${name} controller refused`);
      }
      const badConfig = path.join(dir, 'half.json');
      fs.writeFileSync(badConfig, JSON.stringify({ tls: { ca: tls.ca, cert: '', key: '' } }));
      const half = await run(process.execPath, [
        path.join(ROOT, 'dist', 'src', 'bin', 'walb-archive.js'),
        '--config',
        badConfig,
        '--data-dir',
        path.join(dir, 'x'),
      ]);
      t.is(half.code, 2);
      t.regex(half.stderr, /tls: give ca, cert and key together/);
    } finally {
      for (const s of servers) await s.kill();
      await wdevd.cleanup();
      removeDir(dir);
    }
  },
);
