// The gRPC server of a backup-group role: its own service plus walb.v1.Operations (with health and reflection);
// with TLS, each call is checked against the caller's role (roles.ts).
import type * as grpc from '@grpc/grpc-js';
import { loadProto, serverCredentials, startGrpcServer, tlsEnabled, type ServerTls } from './grpc';
import type { ServerHealth } from './health';
import type { OperationRegistry } from './operations';
import { roleInterceptor } from './roles';
import type { ProtoGrpcType as ArchiveProto } from '../generated/archive';
import type { ProtoGrpcType as CommonProto } from '../generated/common';
import type { ProtoGrpcType as ProxyProto } from '../generated/proxy';
import type { ProtoGrpcType as StorageProto } from '../generated/storage';
import type { ArchiveHandlers } from '../generated/walb/v1/Archive';
import type { ProxyHandlers } from '../generated/walb/v1/Proxy';
import type { StorageHandlers } from '../generated/walb/v1/Storage';

/** The generated handler type of each role's service. */
export interface RoleHandlers {
  Archive: ArchiveHandlers;
  Proxy: ProxyHandlers;
  Storage: StorageHandlers;
}

type RoleProto = ArchiveProto & ProxyProto & StorageProto;

export async function startRoleServer<R extends keyof RoleHandlers>(
  listen: string,
  role: R,
  implementation: RoleHandlers[R],
  ops: OperationRegistry,
  tls?: ServerTls,
): Promise<{ server: grpc.Server; port: number; health: ServerHealth }> {
  const own = loadProto<RoleProto>(`walb/v1/${role.toLowerCase()}.proto`);
  const common = loadProto<CommonProto>('walb/v1/common.proto');
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
    // Plaintext has no peer certificate: it is loopback only unless the config says otherwise (docs/operations.md).
    tlsEnabled(tls) ? [roleInterceptor(tls.unnamedPeersAreAdmin)] : [],
  );
}
