// What a server answers to grpc.health.v1: NOT_SERVING while it starts and stops, and for a service that is
// stuck; checked through a real server and a real health client.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { LOADER_OPTIONS, loadProto, startGrpcServer, stopGrpcServer } from '../../src/common/grpc';
import type { ProtoGrpcType } from '../../src/generated/wdev';
import { healthStatuses } from '../../src/common/health';
import { silentLog } from '../../src/common/log';
import { waitUntil } from '../waiting';

type CheckFn = (req: { service: string }, cb: (err: Error | null, res: { status: string }) => void) => void;
const Health = (
  grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS)) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } };
  }
).grpc.health.v1.Health;

function checker(port: number) {
  const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const check = (service: string) =>
    new Promise<string>((resolve, reject) =>
      (client as unknown as { Check: CheckFn }).Check({ service }, (err, res) =>
        err ? reject(err) : resolve(res.status),
      ),
    );
  return { check, close: () => client.close() };
}

test('healthStatuses: NOT_SERVING everywhere while starting or stopping, only the stuck service otherwise', (t) => {
  const services = ['walb.v1.Storage', 'walb.v1.Operations'];
  const none = new Set<string>();
  for (const phase of ['starting', 'stopping'] as const)
    t.deepEqual(healthStatuses(phase, services, none), {
      '': 'NOT_SERVING',
      'walb.v1.Storage': 'NOT_SERVING',
      'walb.v1.Operations': 'NOT_SERVING',
    });
  t.deepEqual(healthStatuses('serving', services, none), {
    '': 'SERVING',
    'walb.v1.Storage': 'SERVING',
    'walb.v1.Operations': 'SERVING',
  });
  t.deepEqual(healthStatuses('serving', services, new Set(['walb.v1.Storage'])), {
    '': 'SERVING',
    'walb.v1.Storage': 'NOT_SERVING',
    'walb.v1.Operations': 'SERVING',
  });
});

test('a server answers NOT_SERVING until serving(), follows its probe while serving, and NOT_SERVING once stopping', async (t) => {
  // A service with no handlers: health is all this test asks of it.
  const { definition, proto } = loadProto<ProtoGrpcType>('walb/v1/wdev.proto');
  const { server, port, health } = await startGrpcServer(
    '127.0.0.1:0',
    [definition],
    [{ name: 'walb.v1.WdevControl', definition: proto.walb.v1.WdevControl.service, implementation: {} }],
  );
  const c = checker(port);
  try {
    t.is(await c.check(''), 'NOT_SERVING', 'starting');
    let stuck = false;
    health.probe('walb.v1.WdevControl', 20, async () => stuck, silentLog);
    health.serving();
    t.is(await c.check(''), 'SERVING');
    stuck = true;
    await waitUntil(async () => (await c.check('walb.v1.WdevControl')) === 'NOT_SERVING', 'stuck', 5000);
    t.is(await c.check(''), 'SERVING', 'a stuck service leaves the server serving');
    stuck = false;
    await waitUntil(async () => (await c.check('walb.v1.WdevControl')) === 'SERVING', 'unstuck', 5000);
    health.stopping();
    t.is(await c.check(''), 'NOT_SERVING', 'stopping');
    t.is(await c.check('walb.v1.WdevControl'), 'NOT_SERVING');
  } finally {
    c.close();
    await stopGrpcServer(server);
  }
});
