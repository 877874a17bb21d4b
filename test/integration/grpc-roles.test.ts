// The role check of a TLS server (src/common/roles.ts) on a real loopback server with certificates of
// scripts/make-test-ca.sh: a call the caller's role may not make ends with status PERMISSION_DENIED and reason
// PERMISSION_DENIED before its handler runs; health stays open; a certificate without role is admin only when the
// server's tls.unnamedPeersAreAdmin says so.
import test from 'ava';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { errorCode } from '../../src/common/errors';
import {
  REASON_KEY,
  channelCredentials,
  connect,
  loadProto,
  serverCredentials,
  startGrpcServer,
  stopGrpcServer,
  type TlsFiles,
} from '../../src/common/grpc';
import { OperationRegistry } from '../../src/common/operations';
import { roleInterceptor } from '../../src/common/roles';
import type { ProtoGrpcType as CommonProto } from '../../src/generated/common';
import type { OperationsHandlers } from '../../src/generated/walb/v1/Operations';
import { ROOT, run } from '../processes';
import { tempArea } from '../temp-files';

const area = tempArea('grpc-roles');
test.after.always(() => area.cleanup());

const pki = (async () => {
  const dir = area.name('pki');
  const r = await run('bash', [
    path.join(ROOT, 'scripts', 'make-test-ca.sh'),
    dir,
    'admin',
    'proxy',
    'unnamed:',
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const files = (name: string): TlsFiles => ({
    ca: path.join(dir, 'ca.pem'),
    cert: path.join(dir, `${name}.pem`),
    key: path.join(dir, `${name}.key`),
  });
  return { admin: files('admin'), proxy: files('proxy'), unnamed: files('unnamed') };
})();

/** An Operations server over TLS with the role check; `listed` counts the List calls its handler took. */
async function server(unnamedPeersAreAdmin: boolean) {
  const { admin } = await pki;
  const { definition, proto } = loadProto<CommonProto>('walb/v1/common.proto');
  const ops = new OperationRegistry();
  let listed = 0;
  const implementation: OperationsHandlers = {
    ...ops.service(),
    List: (_call, callback) => {
      listed++;
      callback(null, { operations: [] });
    },
  };
  const { server, port, health } = await startGrpcServer(
    '127.0.0.1:0',
    [definition],
    [{ name: 'walb.v1.Operations', definition: proto.walb.v1.Operations.service, implementation }],
    serverCredentials(admin),
    [roleInterceptor(unnamedPeersAreAdmin)],
  );
  health.serving();
  const clientOf = (tls: TlsFiles) =>
    connect(proto.walb.v1.Operations, `127.0.0.1:${port}`, channelCredentials(tls), 5000);
  return { port, clientOf, listed: () => listed, close: () => stopGrpcServer(server) };
}

test('a proxy certificate is refused with PERMISSION_DENIED before the handler; admin is served', async (t) => {
  const { proxy, admin } = await pki;
  const s = await server(false);
  try {
    const raw = new grpc.Client(`127.0.0.1:${s.port}`, channelCredentials(proxy));
    const status = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest(
        '/walb.v1.Operations/List',
        () => Buffer.alloc(0),
        (b: Buffer) => b,
        {},
        (err) => resolve(err!),
      ),
    );
    raw.close();
    t.is(status.code, grpc.status.PERMISSION_DENIED);
    t.deepEqual(status.metadata.get(REASON_KEY), ['PERMISSION_DENIED']);
    t.is(status.details, 'role proxy may not call walb.v1.Operations/List');
    t.is(s.listed(), 0, 'the handler never saw the refused call');

    const asAdmin = s.clientOf(admin);
    t.deepEqual((await asAdmin.List({ volume: '', finished: false })).operations, []);
    asAdmin.close();
    t.is(s.listed(), 1);
  } finally {
    await s.close();
  }
});

test('health answers every role, a proxy included', async (t) => {
  const { proxy } = await pki;
  const s = await server(false);
  try {
    const client = new grpc.Client(`127.0.0.1:${s.port}`, channelCredentials(proxy));
    const reply = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        () => Buffer.alloc(0),
        (b: Buffer) => b,
        {},
        (err, res) => (err ? reject(err) : resolve(res!)),
      ),
    );
    client.close();
    // HealthCheckResponse { status: SERVING (1) }: field 1, varint 1.
    t.deepEqual([...reply], [0x08, 0x01]);
  } finally {
    await s.close();
  }
});

test('a certificate without role is refused, unless the server takes unnamed peers as admin', async (t) => {
  const { unnamed } = await pki;
  for (const asAdmin of [false, true]) {
    const s = await server(asAdmin);
    const client = s.clientOf(unnamed);
    try {
      if (asAdmin) t.deepEqual((await client.List({ volume: '', finished: false })).operations, []);
      else {
        const err = await t.throwsAsync(client.List({ volume: '', finished: false }));
        t.is(errorCode(err), 'PERMISSION_DENIED');
        t.regex(err.message, /names no role .*walb\.v1\.Operations\/List.*tls\.unnamedPeersAreAdmin/);
      }
    } finally {
      client.close();
      await s.close();
    }
  }
});
