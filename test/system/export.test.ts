// `walbc export` (docs/servers.md §6.10) over a real backup group: an ext4 file system and random data written
// through NBD to the storage's wdev reach the archive as a full backup plus wdiffs; the exported snapshot, read
// virtually, equals the restored image byte for byte through nbdcopy and qemu-img compare, mounts read-only through
// nbdfuse and a loop device with the same files, refuses writes, holds off apply, merge and gc while exported, and is
// gone after unexport and after the archive restarts.
import test from 'ava';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Group } from '../group-fixture';
import { P, RawClient } from '../nbd-client';
import { run } from '../processes';
import { waitUntil } from '../waiting';

const MiB = 1 << 20;
const FS_BYTES = 8 * MiB;

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

interface Exported {
  volume: string;
  gid: number;
  name: string;
  uris: string[];
  size: number;
  connections: number;
}

/** Writes `bytes` at `offset` of the wdev through NBD in 1 MiB requests, then a flush. */
async function writeAll(c: RawClient, offset: number, bytes: Buffer): Promise<void> {
  for (let at = 0, h = 1; at < bytes.length; at += MiB, h++)
    if ((await c.writeAt(h, offset + at, bytes.subarray(at, at + MiB))) !== 0)
      throw new Error('write failed');
  if ((await c.simple(P.NBD_CMD_FLUSH, 9999, 0, 0)) !== 0) throw new Error('flush failed');
}

test.serial(
  'an exported snapshot equals its restored image (nbdcopy, qemu-img compare), mounts read-only as ext4, refuses writes and holds off apply, merge and gc until unexport',
  async (t) => {
    const g = await Group.start(t, 'export');
    const work = path.join(g.dir, 'work');
    const mnt = path.join(work, 'mnt');
    const fuseDir = path.join(work, 'fuse');
    fs.mkdirSync(mnt, { recursive: true });
    fs.mkdirSync(fuseDir);
    let loop = '';
    let mounted = '';
    let nbdfuse = false;
    try {
      await g.ok('init-vol', 'vol0', 'w0');
      const c = await g.nbd();
      await g.writeRandom(c, 8);
      await g.ok('full-backup', 'vol0', '--wait');

      // An ext4 file system with files, written after the full backup: it lives in the wdiffs only.
      const src = path.join(work, 'src');
      fs.mkdirSync(path.join(src, 'd'), { recursive: true });
      const files = new Map<string, string>();
      for (let i = 0; i < 6; i++) {
        const rel = i % 2 ? `d/file${i}` : `file${i}`;
        fs.writeFileSync(path.join(src, rel), crypto.randomBytes(20_000 + i * 40_000));
        files.set(rel, sha256(path.join(src, rel)));
      }
      const fsImage = path.join(work, 'fs.img');
      await must('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, fsImage, `${FS_BYTES / 1024}k`]);
      await writeAll(c, 0, fs.readFileSync(fsImage));
      const first = Number(await g.ok('snapshot', 'vol0', '--wait'));
      // Random writes above the file system, in a second wdiff.
      for (let i = 0; i < 10; i++) {
        const len = 4096 * (1 + crypto.randomInt(16));
        const off = FS_BYTES + 4096 * crypto.randomInt((g.size - FS_BYTES - len) / 4096);
        t.is(await c.writeAt(100 + i, off, crypto.randomBytes(len)), 0);
      }
      t.is(await c.simple(P.NBD_CMD_FLUSH, 9998, 0, 0), 0);
      const gid = Number(await g.ok('snapshot', 'vol0', '--wait'));
      t.true(gid > first);

      const e = JSON.parse(await g.ok('export', 'vol0', String(gid), '--json')) as Exported;
      t.is(e.name, `vol0/${gid}`);
      t.is(e.size, g.size);
      const uri = e.uris[0];
      t.regex(uri, /^nbd\+unix:\/\//);
      const again = await g.walbc('export', 'vol0', String(gid));
      t.not(again.code, 0, 'a second export of the same snapshot is refused');
      t.regex(again.stderr, /exported already/);

      const restored = (
        JSON.parse(await g.ok('restore', 'vol0', String(gid), '--wait', '--json')) as { result: string }
      ).result;
      const copy = path.join(work, 'copy.img');
      await must('nbdcopy', [uri, copy]);
      t.true(
        fs.readFileSync(copy).equals(fs.readFileSync(restored)),
        'nbdcopy of the export == restored image',
      );
      await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', restored, uri]);

      // Read-only ext4 through nbdfuse and a read-only loop device.
      const pidFile = path.join(work, 'nbdfuse.pid');
      spawn('nbdfuse', ['-r', '-P', pidFile, path.join(fuseDir, 'disk'), uri], { stdio: 'ignore' });
      nbdfuse = true;
      await waitUntil(
        () => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '',
        'nbdfuse',
      );
      loop = (await must('losetup', ['-f', '--show', '-r', path.join(fuseDir, 'disk')])).trim();
      await must('mount', ['-o', 'ro,noload', '-t', 'ext4', loop, mnt]);
      mounted = mnt;
      for (const [rel, hash] of files) t.is(sha256(path.join(mnt, rel)), hash, rel);
      const listed = JSON.parse(await g.ok('export', 'vol0', '--json')) as Exported[];
      t.is(listed.length, 1);
      t.is(listed[0].gid, gid);
      t.true(listed[0].connections >= 1, 'nbdfuse is connected');
      await must('umount', [mnt]);
      mounted = '';
      await must('losetup', ['-d', loop]);
      loop = '';
      await must('fusermount3', ['-u', fuseDir]);
      nbdfuse = false;

      // Writes are refused; the export is read-only.
      const socket = new URL(uri).searchParams.get('socket')!;
      const { c: reader, flags } = await RawClient.go(socket, e.name);
      t.truthy(flags & P.NBD_FLAG_READ_ONLY);
      t.is(await reader.writeAt(1, 0, Buffer.alloc(4096, 1)), P.NBD_EPERM);
      const r = await reader.readAt(2, 0, 4096);
      t.is(r.error, 0);
      t.true(r.data.equals(fs.readFileSync(restored).subarray(0, 4096)));

      // Apply, merge and gc give way to the export with a typed refusal.
      for (const args of [
        ['apply', 'vol0', String(gid)],
        ['merge', 'vol0', String(first), String(gid)],
        ['gc-diff', 'vol0'],
      ]) {
        const refused = await g.walbc(...args, '--json');
        t.not(refused.code, 0, `${args[0]} refused while exported`);
        t.regex(refused.stderr, /busy \(Export\)/, args[0]);
      }

      await g.ok('unexport', 'vol0', String(gid));
      await reader.closedByServer();
      t.deepEqual(JSON.parse(await g.ok('export', 'vol0', '--json')), []);
      await t.throwsAsync(RawClient.go(socket, e.name), undefined, 'the name is no longer served');
      const missing = await g.walbc('unexport', 'vol0', String(gid));
      t.not(missing.code, 0);
      t.regex(missing.stderr, /not exported/);

      // Exports live in memory only: a restarted archive has none.
      await g.ok('export', 'vol0', String(first));
      await g.archives[0].kill();
      await g.archives[0].start();
      t.deepEqual(JSON.parse(await g.ok('export', 'vol0', '--json')), []);
      // And with no export the maintenance runs again.
      await g.ok('del-restored', 'vol0', String(gid));
      await g.ok('apply', 'vol0', String(gid), '--wait');
    } finally {
      if (mounted) await run('umount', [mounted]);
      if (loop) await run('losetup', ['-d', loop]);
      if (nbdfuse) await run('fusermount3', ['-u', fuseDir]);
      await g.cleanup();
    }
  },
);
