// The gRPC server of a backup-group role: its own service plus walb.v1.Operations (with health and reflection).
import type * as grpc from '@grpc/grpc-js';
import { loadProto, serverCredentials, startGrpcServer, type TlsFiles } from './grpc';
import type { OperationRegistry } from './operations';

type ServiceCtor = { service: grpc.ServiceDefinition };

export async function startRoleServer(
  listen: string,
  role: 'Archive' | 'Proxy' | 'Storage',
  implementation: grpc.UntypedServiceImplementation,
  ops: OperationRegistry,
  tls?: TlsFiles,
): Promise<{ server: grpc.Server; port: number }> {
  type Pkg = { walb: { v1: Record<string, ServiceCtor> } };
  const own = loadProto<Pkg>(`walb/v1/${role.toLowerCase()}.proto`);
  const common = loadProto<Pkg>('walb/v1/common.proto');
  return startGrpcServer(
    listen,
    [own.definition, common.definition],
    [
      { name: `walb.v1.${role}`, definition: own.proto.walb.v1[role].service, implementation },
      {
        name: 'walb.v1.Operations',
        definition: common.proto.walb.v1.Operations.service,
        implementation: ops.service(),
      },
    ],
    serverCredentials(tls),
  );
}
