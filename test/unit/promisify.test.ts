// The one client helper: a generated client's unary methods as promises, its streams as they are, a method named
// at run time only when the service has it as unary, and the compiler refusing unknown methods and bad requests.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { connect, loadProto, startGrpcServer, stopGrpcServer } from '../../src/common/grpc';
import { OperationRegistry } from '../../src/common/operations';
import type { ProtoGrpcType as CommonProto } from '../../src/generated/common';
import type { Operation__Output } from '../../src/generated/walb/v1/Operation';

async function operations() {
  const { definition, proto } = loadProto<CommonProto>('walb/v1/common.proto');
  const ops = new OperationRegistry();
  const { server, port } = await startGrpcServer(
    '127.0.0.1:0',
    [definition],
    [
      {
        name: 'walb.v1.Operations',
        definition: proto.walb.v1.Operations.service,
        implementation: ops.service(),
      },
    ],
  );
  const client = connect(
    proto.walb.v1.Operations,
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
    5000,
  );
  return { ops, client, close: () => (client.close(), stopGrpcServer(server)) };
}

test('unary methods resolve with the reply and server streams deliver every message to the end', async (t) => {
  const { ops, client, close } = await operations();
  try {
    let finish = () => {};
    const op = ops.start('restore', 'vol', () => new Promise<void>((resolve) => (finish = resolve)));
    const got = await client.Get({ id: op.id });
    t.is(got.kind, 'restore');
    t.is(got.state, 'running');
    t.deepEqual(
      (await client.List({ volume: 'vol' })).operations.map((o) => o.id),
      [op.id],
    );
    const seen: Operation__Output[] = [];
    const watched = new Promise<void>((resolve, reject) => {
      const stream = client.Watch({ id: op.id });
      stream.on('data', (o: Operation__Output) => seen.push(o));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 100));
    finish();
    await watched;
    t.is(seen[0].state, 'running');
    t.is(seen.at(-1)!.state, 'done');
  } finally {
    await close();
  }
});

test('a method named at run time is found only when the service has it as a unary method', async (t) => {
  const { client, close } = await operations();
  try {
    const list = client.unaryMethod('List');
    t.truthy(list);
    t.deepEqual(await list!({ volume: 'none' }), { operations: [] });
    for (const name of ['Watch', 'NoSuchMethod', 'constructor', 'toString', 'list'])
      t.is(client.unaryMethod(name), undefined, name);
  } finally {
    await close();
  }
});

test('an unknown method is refused by the compiler and is not there at run time either', async (t) => {
  const { client, close } = await operations();
  try {
    // @ts-expect-error: the service has no such method
    t.throws(() => client.NoSuchMethod({}), { instanceOf: TypeError });
    // @ts-expect-error: the camel-case aliases of the generated client are not part of it
    t.throws(() => client.get({ id: 'x' }), { instanceOf: TypeError });
    // @ts-expect-error: Get takes an OperationRef ({ id: string })
    await t.throwsAsync(client.Get({ ident: 'x' }), { message: /no operation/ });
  } finally {
    await close();
  }
});
