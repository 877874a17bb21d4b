// A real file system on a wdev: nbdfuse exposes the wdev as a file, losetup makes it a block device, mkfs.ext4
// and mount use it. After the daemon is killed and restarted (redo), the ddev alone is a clean ext4 with the same
// files.
import test from 'ava';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../processes';
import { waitUntil } from '../waiting';
import { makeTempDir, removeDir } from '../temp-files';
import { Wdevd, makeWdevFiles } from '../wdevd-harness';

const MiB = 1 << 20;

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

test('ext4 on a wdev through nbdfuse and a loop device: after SIGKILL and redo the ddev is a clean file system with the same files', async (t) => {
  const dir = makeTempDir('wdev-ext4');
  const daemon = new Wdevd(dir);
  const fuseDir = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(fuseDir);
  fs.mkdirSync(mnt);
  let loop = '';
  let mounted = '';
  const nbdfuse = { proc: undefined as ReturnType<typeof spawn> | undefined };
  try {
    await daemon.start();
    // The log ring (32 MiB) is smaller than what mkfs and the files write: it wraps, and set-oldest-lsid below
    // plays the storage server that extracts the logs.
    const files = await makeWdevFiles(dir, 'fs', { ldevBytes: 32 * MiB, ddevBytes: 128 * MiB, pbs: 4096 });
    await daemon.client.createWdev({ ...files, name: 'fs' });

    const pidFile = path.join(dir, 'nbdfuse.pid');
    nbdfuse.proc = spawn('nbdfuse', ['-P', pidFile, path.join(fuseDir, 'disk'), daemon.uri('fs')], {
      stdio: 'ignore',
    });
    await waitUntil(
      () => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '',
      'nbdfuse',
    );
    loop = (await must('losetup', ['-f', '--show', path.join(fuseDir, 'disk')])).trim();
    await must('mkfs.ext4', ['-q', '-F', loop]);
    await must('mount', [loop, mnt]);
    mounted = mnt;
    const afterMkfs = await daemon.client.takeCheckpoint('fs');
    await daemon.client.setOldestLsid('fs', afterMkfs.lsids!.prevWritten);
    const expect = new Map<string, string>();
    for (let i = 0; i < 12; i++) {
      const name = `file${i}`;
      const p = path.join(mnt, i % 3 === 0 ? `d${i}` : '', name);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      // fsync so that each file reaches the wdev now, not in one burst at the final sync.
      const fd = fs.openSync(p, 'w');
      fs.writeSync(fd, crypto.randomBytes((i + 1) * 700 * 1024));
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      expect.set(path.relative(mnt, p), sha256(p));
      const st = await daemon.client.takeCheckpoint('fs');
      await daemon.client.setOldestLsid('fs', st.lsids!.prevWritten);
    }
    fs.rmSync(path.join(mnt, 'file1'));
    expect.delete('file1');
    await must('sync', []);
    await must('umount', [mnt]);
    mounted = '';
    await must('losetup', ['-d', loop]);
    loop = '';
    await must('fusermount3', ['-u', fuseDir]);
    nbdfuse.proc = undefined;
    const before = await daemon.client.status('fs');
    t.false(before.overflow);

    // Kill without any drain: what is not on the ddev yet is only in the log.
    await daemon.kill();
    await daemon.start();
    await daemon.stop();

    const fsck = await run('fsck.ext4', ['-n', '-f', files.ddev]);
    t.is(fsck.code, 0, `fsck of the ddev: ${fsck.stdout}${fsck.stderr}`);
    loop = (await must('losetup', ['-f', '--show', '-r', files.ddev])).trim();
    await must('mount', ['-o', 'ro', loop, mnt]);
    mounted = mnt;
    const found = new Map<string, string>();
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.name === 'lost+found') continue;
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else found.set(path.relative(mnt, p), sha256(p));
      }
    };
    walk(mnt);
    const sorted = (m: Map<string, string>) =>
      Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
    t.deepEqual(sorted(found), sorted(expect));
  } finally {
    if (mounted) await run('umount', [mounted]);
    if (loop) await run('losetup', ['-d', loop]);
    if (nbdfuse.proc) await run('fusermount3', ['-u', fuseDir]);
    await daemon.cleanup();
    removeDir(dir);
  }
});
