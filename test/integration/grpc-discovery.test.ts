// What grpcurl relies on, checked with a plain gRPC client: every server answers the standard health check and
// lists its services through server reflection, so ad-hoc calls need no proto files.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { protoPath as healthProto } from 'grpc-health-check';
import { makeTempDir, removeDir } from '../temp-files';
import { REFLECTION_PROTO } from '../system-harness';
import { Wdevd } from '../wdevd-harness';

function load(file: string): grpc.GrpcObject {
  return grpc.loadPackageDefinition(
    protoLoader.loadSync(file, { keepCase: true, defaults: true, enums: String }),
  );
}

type Ctor = new (address: string, creds: grpc.ChannelCredentials) => grpc.Client;

function service(obj: grpc.GrpcObject, dotted: string): Ctor {
  let o: unknown = obj;
  for (const part of dotted.split('.')) o = (o as Record<string, unknown>)[part];
  return o as Ctor;
}

test('walb-wdevd answers the gRPC health check and lists WdevControl through server reflection', async (t) => {
  const dir = makeTempDir('grpc-discovery');
  const d = new Wdevd(dir);
  try {
    await d.start();
    const address = `unix:${path.join(d.runDir, 'wdevd.sock')}`;
    const Health = service(load(healthProto), 'grpc.health.v1.Health');
    const health = new Health(address, grpc.credentials.createInsecure());
    const status = await new Promise<{ status: string }>((resolve, reject) =>
      (health as unknown as Record<string, CallableFunction>).Check(
        { service: '' },
        (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res)),
      ),
    );
    t.is(status.status, 'SERVING');
    health.close();

    const Reflection = service(load(REFLECTION_PROTO), 'grpc.reflection.v1.ServerReflection');
    const refl = new Reflection(address, grpc.credentials.createInsecure());
    const call = (
      refl as unknown as Record<
        string,
        () => grpc.ClientDuplexStream<object, { list_services_response?: { service: { name: string }[] } }>
      >
    ).ServerReflectionInfo();
    const names = await new Promise<string[]>((resolve, reject) => {
      call.on('data', (res) => {
        resolve((res.list_services_response?.service ?? []).map((s: { name: string }) => s.name));
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '' });
    });
    t.true(names.includes('walb.v1.WdevControl'), names.join(','));
    t.true(names.includes('grpc.health.v1.Health'), names.join(','));
    refl.close();
  } finally {
    await d.cleanup();
    removeDir(dir);
  }
});
