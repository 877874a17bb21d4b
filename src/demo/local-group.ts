// npm run demo — the README's main job: a local backup group on loopback with file-backed devices in a temporary
// directory. walb-wdevd, walb-storage, walb-proxy and walb-archive run as real processes; an ext4 file system lives
// on the wdev (nbdfuse + losetup where the machine allows it, otherwise data is written through an NBD client);
// a full backup, files, a snapshot, its restore on the archive and a check that the restored image holds the same
// files (fsck clean). Prints each step with its duration and cleans up.
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect, loadProto, type Promised } from '../common/grpc';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ProtoGrpcType as CommonProto } from '../generated/common';
import type { ProtoGrpcType as ProxyProto } from '../generated/proxy';
import type { ProtoGrpcType as StorageProto } from '../generated/storage';
import type { Operation__Output } from '../generated/walb/v1/Operation';
import type { OperationsClient } from '../generated/walb/v1/Operations';
import { native } from '../native';
import { WdevClient } from '../wdev/client';
import { Processes, startLocalGroup, type LocalGroup } from './processes';

const DEVICE = 256 << 20;
const LDEV = 128 << 20;
const procs = new Processes();
// Unmounts and detaches, newest first; they run before the servers stop (a FUSE-backed loop needs nbdfuse).
const cleanups: (() => void)[] = [];
let workDir = '';

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  process.stdout.write(`== ${what} ... `);
  const t0 = Date.now();
  const r = await fn();
  process.stdout.write(`${((Date.now() - t0) / 1000).toFixed(2)} s\n`);
  return r;
}

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function canMount(): boolean {
  if (process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse')) return false;
  try {
    for (const c of ['nbdfuse', 'losetup', 'mkfs.ext4', 'mount', 'fusermount3'])
      sh('sh', ['-c', `command -v ${c}`]);
    return true;
  } catch {
    return false;
  }
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function walk(dir: string, base = dir, out = new Map<string, string>()): Map<string, string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'lost+found') continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, base, out);
    else out.set(path.relative(base, p), sha256(p));
  }
  return out;
}

async function main(): Promise<number> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'walb-demo-'));
  workDir = work;
  console.log(`local backup group in ${work}`);
  let group: LocalGroup | undefined;
  await step('start walb-wdevd, walb-archive, walb-proxy, walb-storage on loopback', async () => {
    group = await startLocalGroup(procs, work);
  });
  const { archive: archiveAddr, proxy: proxyAddr, storage: storageAddr, runDir: run } = group!;
  const wdevd = new WdevClient(path.join(run, 'wdevd.sock'), 30000);
  const insecure = grpc.credentials.createInsecure();
  const archive = connect(
    loadProto<ArchiveProto>('walb/v1/archive.proto').proto.walb.v1.Archive,
    archiveAddr,
    insecure,
    60000,
  );
  const proxy = connect(
    loadProto<ProxyProto>('walb/v1/proxy.proto').proto.walb.v1.Proxy,
    proxyAddr,
    insecure,
    60000,
  );
  const storage = connect(
    loadProto<StorageProto>('walb/v1/storage.proto').proto.walb.v1.Storage,
    storageAddr,
    insecure,
    60000,
  );
  const Ops = loadProto<CommonProto>('walb/v1/common.proto').proto.walb.v1.Operations;
  const storageOps = connect(Ops, storageAddr, insecure, 60000);
  const archiveOps = connect(Ops, archiveAddr, insecure, 60000);
  cleanups.unshift(() => [wdevd, archive, proxy, storage, storageOps, archiveOps].forEach((c) => c.close()));
  const wait = async (ops: Promised<OperationsClient>, id: string, label: string) => {
    let op: Operation__Output | undefined;
    let shown = 0;
    await until(async () => {
      op = await ops.Get({ id });
      if (op.total && Date.now() - shown > 1000 && process.stdout.isTTY) {
        shown = Date.now();
        process.stdout.write(`\r== ${label} ... ${Math.round((100 * op.done) / op.total)}%   `);
      }
      return op.state !== 'running';
    }, label);
    if (op!.state !== 'done') throw new Error(`${label} ${op!.state}: ${op!.error}`);
    return op!;
  };

  const ldev = path.join(work, 'vol0.ldev');
  const ddev = path.join(work, 'vol0.ddev');
  await step(
    `format a ${LDEV >> 20} MiB log device for a ${DEVICE >> 20} MiB data device, create wdev vol0`,
    async () => {
      fs.writeFileSync(ldev, '');
      fs.truncateSync(ldev, LDEV);
      fs.writeFileSync(ddev, '');
      fs.truncateSync(ddev, DEVICE);
      await native.formatLdev(ldev, { pbs: 4096, deviceSize: DEVICE / 512, name: 'vol0' });
      await wdevd.createWdev({ ldev, ddev, name: 'vol0' });
    },
  );
  await step(
    'register the volume: archive init-vol, proxy archive-info add + start, storage init-vol',
    async () => {
      await archive.InitVol({ volume: 'vol0' });
      await proxy.ArchiveInfoAdd({ volume: 'vol0', name: 'a0', address: archiveAddr });
      await proxy.Start({ volume: 'vol0' });
      await storage.InitVol({ volume: 'vol0', wdev: 'vol0' });
    },
  );

  const uri = `nbd+unix:///vol0?socket=${path.join(run, 'nbd.sock')}`;
  const mountable = canMount();
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt);
  let loop = '';
  if (mountable) {
    await step('ext4 on the wdev: nbdfuse + losetup + mkfs.ext4 + mount', async () => {
      const fuseDir = path.join(work, 'fuse');
      fs.mkdirSync(fuseDir);
      const pid = path.join(work, 'nbdfuse.pid');
      procs.all.push(spawn('nbdfuse', ['-P', pid, path.join(fuseDir, 'disk'), uri], { stdio: 'ignore' }));
      cleanups.unshift(() => {
        try {
          sh('fusermount3', ['-u', fuseDir]);
        } catch {
          /* already unmounted */
        }
      });
      await until(
        async () => fs.existsSync(pid) && fs.readFileSync(pid, 'utf8').trim() !== '',
        'nbdfuse',
        20000,
      );
      loop = sh('losetup', ['-f', '--show', path.join(fuseDir, 'disk')]).trim();
      cleanups.unshift(() => {
        try {
          sh('losetup', ['-d', loop]);
        } catch {
          /* gone */
        }
      });
      sh('mkfs.ext4', ['-q', '-F', loop]);
      sh('mount', [loop, mnt]);
      cleanups.unshift(() => {
        try {
          sh('umount', [mnt]);
        } catch {
          /* not mounted */
        }
      });
    });
  } else {
    console.log(
      '   (no root, /dev/fuse or tools for a mount here: data goes through qemu-io instead of files)',
    );
  }

  const full = await step('full backup to the archive', async () => {
    const op = await storage.FullBackup({ volume: 'vol0' });
    return wait(storageOps, op.id, 'full backup');
  });
  console.log(
    `   base image at gid ${full.result}, storage now Target: logs flow storage -> proxy -> archive`,
  );

  const expected = new Map<string, string>();
  await step('write files (40 MiB in 16 files) and sync', async () => {
    if (mountable) {
      for (let i = 0; i < 16; i++) {
        const p = path.join(mnt, i % 4 === 0 ? `dir${i}` : '', `file${i}.bin`);
        fs.mkdirSync(path.dirname(p), { recursive: true });
        fs.writeFileSync(p, crypto.randomBytes(((i % 5) + 1) * 1024 * 1024));
      }
      sh('sync', []);
      for (const [k, v] of walk(mnt)) expected.set(k, v);
    } else {
      sh('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 40M', '-c', 'flush', uri]);
    }
  });

  // As for any snapshot of a mounted file system: freeze it so that the image is clean (journal checkpointed).
  const gid = await step(
    mountable ? 'fsfreeze, snapshot (explicit), unfreeze' : 'snapshot (explicit)',
    async () => {
      if (mountable) sh('fsfreeze', ['--freeze', mnt]);
      try {
        return Number((await storage.Snapshot({ volume: 'vol0' })).gid);
      } finally {
        if (mountable) sh('fsfreeze', ['--unfreeze', mnt]);
      }
    },
  );
  console.log(`   gid ${gid}`);
  await step(`wait until gid ${gid} is restorable on the archive`, () =>
    until(
      async () =>
        (await archive.GetRestorable({ volume: 'vol0' })).snapshots.some((s) => Number(s.gid) === gid),
      'restorable',
    ),
  );
  const restored = await step(`restore gid ${gid} on the archive`, async () => {
    const op = await archive.Restore({ volume: 'vol0', gid });
    return (await wait(archiveOps, op.id, 'restore')).result;
  });
  console.log(`   ${restored}`);

  let ok = true;
  await step('check the restored image', async () => {
    if (mountable) {
      const fsck = execFileSync('fsck.ext4', ['-n', '-f', restored], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      console.log(`\n   fsck.ext4 -n: clean (${fsck.trim().split('\n').pop()})`);
      const rmnt = path.join(work, 'restored');
      fs.mkdirSync(rmnt);
      const rloop = sh('losetup', ['-f', '--show', '-r', restored]).trim();
      try {
        sh('mount', ['-o', 'ro', rloop, rmnt]);
        try {
          const found = walk(rmnt);
          for (const [k, v] of expected) {
            if (found.get(k) !== v) {
              ok = false;
              console.log(`   DIFFERENT: ${k}`);
            }
          }
          if (found.size !== expected.size) ok = false;
          console.log(
            `   ${found.size} files, ${expected.size} expected, ${ok ? 'all identical (sha256)' : 'MISMATCH'}`,
          );
        } finally {
          sh('umount', [rmnt]);
        }
      } finally {
        sh('losetup', ['-d', rloop]);
      }
    } else {
      const device = Buffer.alloc(DEVICE);
      const img = fs.readFileSync(restored);
      ok = img.subarray(1 << 20, 41 << 20).every((b) => b === 0x5a) && img.length === device.length;
      console.log(`   ${ok ? 'the written pattern is in the restored image' : 'MISMATCH'}`);
    }
  });
  console.log(ok ? '\nthe snapshot restored on the archive holds the same files.' : '\nRESTORE CHECK FAILED');
  return ok ? 0 : 1;
}

async function cleanup(): Promise<void> {
  for (const c of cleanups.splice(0)) {
    try {
      c();
    } catch {
      /* best effort */
    }
  }
}

async function finish(code: number): Promise<never> {
  await cleanup();
  await procs.stopAll();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  process.exit(code);
}

main().then(finish, async (err: unknown) => {
  console.error(`\ndemo failed: ${(err as Error).message}`);
  await finish(1);
});
