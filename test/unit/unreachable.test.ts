// A daemon that cannot be reached is answered with one sentence naming the address and what to check, not with
// grpc-js internals: a TCP port nobody listens on, a unix socket that does not exist (real channels).
import test from 'ava';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { connect, loadProto, unreachableMessage } from '../../src/common/grpc';
import type { ProtoGrpcType as StorageProto } from '../../src/generated/storage';
import { WdevClient } from '../../src/wdev/client';
import { freePort } from '../system-harness';
import { makeTempDir, removeDir } from '../temp-files';

test('a TCP address nobody listens on: UNAVAILABLE, "cannot reach HOST:PORT (connection refused)"', async (t) => {
  const port = await freePort();
  const Storage = loadProto<StorageProto>('walb/v1/storage.proto').proto.walb.v1.Storage;
  const client = connect(Storage, `127.0.0.1:${port}`, grpc.credentials.createInsecure(), 5000);
  try {
    const err = await t.throwsAsync(client.ListVolumes({}), { code: 'UNAVAILABLE' });
    t.is(
      err?.message,
      `cannot reach 127.0.0.1:${port} (connection refused): is the server running and listening there?`,
    );
  } finally {
    client.close();
  }
});

test('a unix socket that does not exist: UNAVAILABLE naming the socket and --run-dir/--socket', async (t) => {
  const dir = makeTempDir('unreachable');
  const socket = path.join(dir, 'wdevd.sock');
  const client = new WdevClient(socket, 5000);
  try {
    const err = await t.throwsAsync(client.listWdev(), { code: 'UNAVAILABLE' });
    t.is(
      err?.message,
      `cannot reach unix:${socket} (no socket file there): is walb-wdevd running, and do --run-dir or --socket name its socket?`,
    );
    t.notRegex(err?.message ?? '', /No connection established|Last error/);
  } finally {
    client.close();
    removeDir(dir);
  }
});

test('unreachableMessage: the cause in words, the dns: prefix dropped', (t) => {
  t.is(
    unreachableMessage('dns:db1:10000', 'No connection established. Last error: getaddrinfo ENOTFOUND db1'),
    'cannot reach db1:10000 (unknown host name): is the server running and listening there?',
  );
  t.regex(
    unreachableMessage('dns:///10.0.0.1:1', 'connect EHOSTUNREACH'),
    /^cannot reach 10\.0\.0\.1:1 \(no route/,
  );
});
