// Mutual TLS across the group (docs/servers.md §3.9): storage, proxy and archive configured with a CA, a certificate and
// a key, each certificate naming its role (scripts/make-test-ca.sh); walbc with an admin certificate in its layout.
// The whole loop works over TLS with each role calling only what its role allows (full backup, wlogs, the proxy's
// wdiffs, restore equal to the device, a replication to a second archive); a controller without a certificate, or with one from another CA, is
// refused; a proxy's certificate may not clear a volume on the archive, nor may a certificate that names no role.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, run } from '../processes';
import { makeTempDir, removeDir } from '../temp-files';
import { P, RawClient } from '../nbd-client';
import { ServerProc, freePort, walbcOn } from '../system-harness';
import type { TlsFiles } from '../../src/common/grpc';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const SIZE = 8 << 20;

/**
 * A CA of scripts/make-test-ca.sh and a certificate per NAME[:ROLE] it signs (valid for 127.0.0.1 as server and
 * as client), as the `tls` block of each.
 */
async function makePki(dir: string, ...names: string[]): Promise<Record<string, TlsFiles>> {
  const r = await run('bash', [path.join(ROOT, 'scripts', 'make-test-ca.sh'), dir, ...names]);
  if (r.code !== 0) throw new Error(`make-test-ca.sh: ${r.stderr}`);
  const files: Record<string, TlsFiles> = {};
  for (const n of names) {
    const name = n.split(':')[0];
    files[name] = {
      ca: path.join(dir, 'ca.pem'),
      cert: path.join(dir, `${name}.pem`),
      key: path.join(dir, `${name}.key`),
    };
  }
  return files;
}

test.serial(
  'the group over mutual TLS with role certificates: backup and restore work; controllers without the CA, a proxy clearing a volume and a certificate without role are refused',
  async (t) => {
    const dir = makeTempDir('tls');
    const wdevd = new Wdevd(path.join(dir, 'wdevd'));
    const servers: ServerProc[] = [];
    try {
      const pki = await makePki(path.join(dir, 'pki'), 'admin', 'storage', 'proxy', 'archive', 'unnamed:');
      const { rogue } = await makePki(path.join(dir, 'rogue-pki'), 'rogue:admin');
      const configOf = (role: string) => {
        const file = path.join(dir, `${role}.json`);
        fs.writeFileSync(file, JSON.stringify({ tls: { ...pki[role], unnamedPeersAreAdmin: false } }));
        return file;
      };
      await wdevd.start();
      const files = await makeWdevFiles(dir, 'sec', { ldevBytes: 16 << 20, ddevBytes: SIZE, pbs: 4096 });
      await wdevd.client.createWdev({ ...files, name: 'sec' });
      const a0 = new ServerProc('walb-archive', path.join(dir, 'a0'), await freePort(), [
        '--config',
        configOf('archive'),
      ]);
      const p0 = new ServerProc('walb-proxy', path.join(dir, 'p0'), await freePort(), [
        '--config',
        configOf('proxy'),
      ]);
      // A second archive, filled by replication from a0 under the archive role.
      const a1 = new ServerProc('walb-archive', path.join(dir, 'a1'), await freePort(), [
        '--config',
        configOf('archive'),
      ]);
      servers.push(a0, p0, a1);
      await Promise.all([a0.start(), p0.start(), a1.start()]);
      const s0 = new ServerProc('walb-storage', path.join(dir, 's0'), await freePort(), [
        '--config',
        configOf('storage'),
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
        archives: [
          { id: 'a0', address: a0.address },
          { id: 'a1', address: a1.address },
        ],
      };
      const layout = (name: string, extra: object) => {
        const file = path.join(dir, `${name}.json`);
        fs.writeFileSync(file, JSON.stringify({ ...group, ...extra }));
        return file;
      };
      const secure = layout('secure', { tls: pki.admin });
      const { ok } = walbcOn(t, secure);

      await ok('init-vol', 'sec', 'sec');
      const { c } = await RawClient.go(wdevd.nbdSocket, 'sec');
      t.is(await c.writeAt(1, 0, crypto.randomBytes(1 << 20), P.NBD_CMD_FLAG_FUA), 0);
      await ok('full-backup', 'sec', '--wait');
      // The bytes took the archive's bulk port, over TLS too: the storage's role may call FullSync.
      t.regex(a0.stderr, /"event":"full-sync-done","volume":"sec","bytes":1048576,"path":"bulk"/);
      t.is(await c.writeAt(1, 1 << 20, crypto.randomBytes(2 << 20), P.NBD_CMD_FLAG_FUA), 0);
      const gid = await ok('snapshot', 'sec', '--wait');
      const restored = JSON.parse(await ok('restore', 'sec', gid, '--wait', '--json')) as { result: string };
      const device = Buffer.alloc(SIZE);
      for (let off = 0, h = 10; off < SIZE; off += 1 << 20, h++)
        (await c.readAt(h, off, 1 << 20)).data.copy(device, off);
      t.true(
        fs.readFileSync(restored.result).equals(device),
        "over TLS the snapshot restores to the device: the proxy's role may call SendWdiff",
      );
      c.destroy();
      // a0 replicates to a1 over TLS: the archive's role may call the destination's replication steps.
      await ok('replicate', 'sec', 'a0', 'a1', '--wait');
      const replica = JSON.parse(await ok('restore', 'sec', gid, '--archive', 'a1', '--wait', '--json')) as {
        result: string;
      };
      t.true(fs.readFileSync(replica.result).equals(device), 'the replica restores to the device too');

      for (const [name, extra] of [
        ['plaintext', {}],
        ['rogue', { tls: rogue }],
      ] as const) {
        const r = await walbcOn(t, layout(name, extra)).run('get-state', 'sec', 's0');
        t.not(r.code, 0, `${name} controller refused`);
      }
      const asProxy = await walbcOn(t, layout('as-proxy', { tls: pki.proxy })).run('clear-vol', 'sec', 'a0');
      t.is(asProxy.code, 1);
      t.regex(asProxy.stderr, /role proxy may not call walb\.v1\.Archive\/ClearVol \[PERMISSION_DENIED\]/);
      const unnamed = await walbcOn(t, layout('unnamed', { tls: pki.unnamed })).run('get-state', 'sec', 'a0');
      t.is(unnamed.code, 1);
      t.regex(unnamed.stderr, /names no role .* tls\.unnamedPeersAreAdmin .*\[PERMISSION_DENIED\]/);
      t.is(await ok('get-state', 'sec', 'a0'), 'Archived', "the proxy's ClearVol did not reach the volume");
      const badConfig = path.join(dir, 'half.json');
      fs.writeFileSync(badConfig, JSON.stringify({ tls: { ca: pki.admin.ca, cert: '', key: '' } }));
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
