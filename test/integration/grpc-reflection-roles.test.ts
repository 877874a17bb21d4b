// What `grpcurl -plaintext HOST:PORT list`, `describe SERVICE` and a call with a JSON body need from the storage,
// proxy and archive servers, done the way grpcurl does it over server reflection (v1): the service list; the file
// descriptors that define a service, and every file they import, by name; then a call built from those
// descriptors alone (no proto files of ours at hand). The list names exactly what the port serves: its role's
// service, Operations, health and reflection — not the services of the protos it imports.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import protobuf from 'protobufjs';
import * as descriptor from 'protobufjs/ext/descriptor';
import { makeTempDir, removeDir } from '../temp-files';
import { REFLECTION_PROTO, ServerProc, freePort } from '../system-harness';

type Reply = {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_message: string };
};

/** One reflection stream; `ask` sends a request and resolves with its reply. */
function reflection(address: string): { ask(req: object): Promise<Reply>; close(): void } {
  const pkg = grpc.loadPackageDefinition(
    protoLoader.loadSync(REFLECTION_PROTO, { keepCase: true, defaults: true, enums: String }),
  ) as unknown as {
    grpc: {
      reflection: { v1: { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } };
    };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  const stream = (
    client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, Reply> }
  ).ServerReflectionInfo();
  const waiting: ((r: Reply) => void)[] = [];
  stream.on('data', (r: Reply) => waiting.shift()?.(r));
  stream.on('error', () => undefined);
  return {
    ask: (req) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        stream.write(req);
      }),
    close: () => {
      stream.end();
      client.close();
    },
  };
}

type FileProto = { name: string; dependency: string[] };

/** The descriptors defining `symbol` and, transitively, every file they import. */
async function describe(r: ReturnType<typeof reflection>, symbol: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const add = (reply: Reply) => {
    if (reply.error_response) throw new Error(reply.error_response.error_message);
    for (const b of reply.file_descriptor_response!.file_descriptor_proto) {
      const f = descriptor.FileDescriptorProto.decode(b) as unknown as FileProto;
      files.set(f.name, b);
    }
  };
  add(await r.ask({ file_containing_symbol: symbol }));
  for (;;) {
    const missing = [...files.values()]
      .flatMap((b) => (descriptor.FileDescriptorProto.decode(b) as unknown as FileProto).dependency)
      .find((d) => !files.has(d));
    if (!missing) return files;
    add(await r.ask({ file_by_filename: missing }));
  }
}

const ROLES = [
  {
    binary: 'walb-archive',
    service: 'walb.v1.Archive',
    method: 'ListVolumes',
    methods: ['Restore', 'FullSync'],
  },
  {
    binary: 'walb-proxy',
    service: 'walb.v1.Proxy',
    method: 'ListVolumes',
    methods: ['ArchiveInfoAdd', 'SendWlog'],
  },
  {
    binary: 'walb-storage',
    service: 'walb.v1.Storage',
    method: 'ListProxies',
    methods: ['Snapshot', 'FullBackup'],
  },
] as const;

/** What every role's port serves beside its own service. */
const COMMON_SERVICES = [
  'walb.v1.Operations',
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];

for (const role of ROLES) {
  test(`${role.binary}: list, describe and a JSON call work from server reflection alone`, async (t) => {
    const dir = makeTempDir(`reflection-${role.binary}`);
    const extra =
      role.binary === 'walb-storage'
        ? [
            '--archive',
            '127.0.0.1:1',
            '--proxy',
            '127.0.0.1:2',
            '--wdevd-socket',
            path.join(dir, 'none.sock'),
          ]
        : [];
    const server = new ServerProc(role.binary, path.join(dir, 'data'), await freePort(), extra);
    try {
      await server.start();
      const r = reflection(server.address);
      const list = await r.ask({ list_services: '' });
      const names = list.list_services_response!.service.map((s) => s.name);
      // Exactly what this port serves: not walb.v1.Archive on a storage or proxy (their protos import
      // archive.proto), nor the archive's bulk receiver, which has a port of its own.
      t.deepEqual([...names].sort(), [role.service, ...COMMON_SERVICES].sort());
      for (const n of names) t.true((await describe(r, n)).size > 0, `${n} is described`);

      // describe: a root built only from what reflection returned
      const files = await describe(r, role.service);
      const set = descriptor.FileDescriptorSet.fromObject({
        file: [...files.values()].map((b) =>
          descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(b)),
        ),
      });
      const root = (protobuf.Root as unknown as { fromDescriptor(s: unknown): protobuf.Root }).fromDescriptor(
        set,
      );
      const svc = root.lookupService(role.service);
      for (const m of role.methods) t.truthy(svc.methods[m], `${role.service}.${m}`);
      r.close();

      // a call whose request is typed as JSON and encoded with those descriptors
      const m = svc.methods[role.method];
      m.resolve();
      const req = m.resolvedRequestType!;
      const res = m.resolvedResponseType!;
      const client = new grpc.Client(server.address, grpc.credentials.createInsecure());
      const reply = await new Promise<Record<string, unknown>>((resolve, reject) =>
        client.makeUnaryRequest(
          `/${role.service}/${role.method}`,
          (o: object) => Buffer.from(req.encode(req.fromObject(o)).finish()),
          (b: Buffer) => res.toObject(res.decode(b), { defaults: true, arrays: true }),
          JSON.parse('{}') as object,
          (err, value) => (err ? reject(err) : resolve(value!)),
        ),
      );
      t.true(Array.isArray(reply.volumes ?? reply.proxies), JSON.stringify(reply));
      client.close();
    } finally {
      await server.kill();
      removeDir(dir);
    }
  });
}
