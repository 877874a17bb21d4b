// walb-proxy's volume commands through its gRPC service, in-process on loopback with real files: registrations
// create, persist and clear a volume; a refused registration leaves nothing behind.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { silentLog } from '../../src/common/log';
import { loadProxyConfig } from '../../src/config/proxy';
import { ProxyServer } from '../../src/proxy/server';
import { tempArea } from '../temp-files';
import { proxyClient } from '../system-harness';

const tmp = tempArea('proxy-commands');
test.after.always(() => tmp.cleanup());

async function proxyOn(dataDir: string) {
  const server = new ProxyServer(loadProxyConfig({ listen: '127.0.0.1:0', dataDir }), silentLog);
  await server.start();
  const client = proxyClient(`127.0.0.1:${server.port}`);
  return {
    client,
    stop: async () => {
      client.close();
      await server.stop();
    },
  };
}

const a0 = { volume: 'vol', name: 'a0', address: '127.0.0.1:1', compression: '', delaySec: 0 };

test('an update of an archive on an unknown volume is NOT_FOUND and creates no volume', async (t) => {
  const dataDir = tmp.name('update-unknown');
  const { client, stop } = await proxyOn(dataDir);
  try {
    await t.throwsAsync(client.ArchiveInfoUpdate(a0), { code: 'NOT_FOUND' });
    await t.throwsAsync(client.ArchiveInfoAdd({ ...a0, address: 'no-port' }), { code: 'INVALID_ARGUMENT' });
    t.deepEqual((await client.ListVolumes({})).volumes, []);
    t.deepEqual(fs.readdirSync(dataDir), []);
  } finally {
    await stop();
  }
});

test('a registered volume is Stopped, survives a restart and comes back Started', async (t) => {
  const dataDir = tmp.name('restart');
  const first = await proxyOn(dataDir);
  try {
    await first.client.ArchiveInfoAdd(a0);
    await t.throwsAsync(first.client.ArchiveInfoAdd(a0), { code: 'ALREADY_EXISTS' });
    t.is((await first.client.GetState({ volume: 'vol' })).state, 'Stopped');
  } finally {
    await first.stop();
  }
  const second = await proxyOn(dataDir);
  try {
    t.is((await second.client.GetState({ volume: 'vol' })).state, 'Started');
    t.like((await second.client.ArchiveInfoList({ volume: 'vol' })).archives[0], {
      name: 'a0',
      compression: 'snappy',
    });
    t.false((await second.client.IsWdiffSendError({ volume: 'vol', name: 'a0' })).value);
  } finally {
    await second.stop();
  }
});

test('deleting the last archive of a Stopped volume clears it and its files; one of several keeps it', async (t) => {
  const dataDir = tmp.name('delete');
  const { client, stop } = await proxyOn(dataDir);
  try {
    await client.ArchiveInfoAdd(a0);
    await client.ArchiveInfoAdd({ ...a0, name: 'a1' });
    await client.ArchiveInfoDelete({ volume: 'vol', name: 'a1' });
    t.false(fs.existsSync(path.join(dataDir, 'vol', 'sendto', 'a1')));
    t.is((await client.GetState({ volume: 'vol' })).state, 'Stopped');
    await client.ArchiveInfoDelete({ volume: 'vol', name: 'a0' });
    t.is((await client.GetState({ volume: 'vol' })).state, 'Clear');
    t.false(fs.existsSync(path.join(dataDir, 'vol')));
  } finally {
    await stop();
  }
});
