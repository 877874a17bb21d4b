// Roles by certificate (docs/operations.md, "Safe defaults"): with mutual TLS, the peer's certificate names its role
// in a subjectAltName URI `walb-role:ROLE`, and a role may call only the methods it needs. The table below is the one
// place that says which; docs/operations.md shows it (test/unit/roles.test.ts keeps the two equal).
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { WalbError } from './errors';
import { toServiceError } from './grpc';

/** The roles a certificate can name; `admin` (walbc) may call everything. */
export const PEER_ROLES = ['admin', 'storage', 'proxy', 'archive'] as const;
export type PeerRole = (typeof PEER_ROLES)[number];

/** The subjectAltName URI scheme of a role: `URI:walb-role:proxy`. */
export const ROLE_URI_PREFIX = 'walb-role:';

/** Services any role may call: health (the storage checks its proxies) and reflection (read-only). */
export const OPEN_SERVICES = [
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
] as const;

/** What each server role calls on the others, as SERVICE/METHOD; admin is not listed (it may call everything). */
export const ROLE_METHODS: Readonly<Record<Exclude<PeerRole, 'admin'>, readonly string[]>> = {
  // wlogs to its proxies; full and hash backups (and their bulk port, see docs/operations.md) to its archive
  storage: ['walb.v1.Proxy/SendWlog', 'walb.v1.Archive/FullSync', 'walb.v1.Archive/HashSync'],
  // wdiffs to its archives
  proxy: ['walb.v1.Archive/SendWdiff'],
  // replication: a source archive brings a destination archive up to date
  archive: [
    'walb.v1.Archive/GetState',
    'walb.v1.Archive/Status',
    'walb.v1.Archive/FullSync',
    'walb.v1.Archive/HashSync',
    'walb.v1.Archive/SendWdiff',
  ],
};

function isPeerRole(name: string): name is PeerRole {
  return (PEER_ROLES as readonly string[]).includes(name);
}

/** The role names of a certificate's subjectAltName URIs (Node lists them as `URI:walb-role:proxy, ...`). */
export function certificateRoles(cert: Pick<PeerCertificate, 'subjectaltname'> | undefined): string[] {
  const names = (cert?.subjectaltname ?? '').split(', ');
  return names
    .filter((n) => n.startsWith(`URI:${ROLE_URI_PREFIX}`))
    .map((n) => n.slice(4 + ROLE_URI_PREFIX.length));
}

/** Whether a peer of these roles may call `method` (SERVICE/METHOD). */
export function mayCall(roles: readonly PeerRole[], method: string): boolean {
  if (OPEN_SERVICES.some((s) => method.startsWith(`${s}/`))) return true;
  return roles.some((r) => r === 'admin' || ROLE_METHODS[r].includes(method));
}

/**
 * Why a peer with this certificate may not call `method`, or undefined when it may. A certificate that names no
 * role is admin when `unnamedPeersAreAdmin` (the config's tls.unnamedPeersAreAdmin) says so.
 */
export function refusal(
  cert: Pick<PeerCertificate, 'subjectaltname'> | undefined,
  method: string,
  unnamedPeersAreAdmin: boolean,
): string | undefined {
  const named = certificateRoles(cert);
  const roles = named.filter(isPeerRole);
  if (named.length === 0 && unnamedPeersAreAdmin) return undefined;
  if (mayCall(roles, method)) return undefined;
  if (named.length === 0)
    return (
      `the peer's certificate names no role (a subjectAltName URI ${ROLE_URI_PREFIX}ROLE), so it may not call ` +
      `${method}; set tls.unnamedPeersAreAdmin to take such certificates as admin`
    );
  return `role ${named.join(', ')} may not call ${method}`;
}

/**
 * A grpc-js server interceptor that refuses, with PERMISSION_DENIED and the reason, every call the peer's roles do
 * not allow, before the handler sees it.
 */
export function roleInterceptor(unnamedPeersAreAdmin: boolean): grpc.ServerInterceptor {
  return (descriptor, call) => {
    const method = descriptor.path.replace(/^\//, '');
    const denied = refusal(call.getAuthContext().sslPeerCertificate, method, unnamedPeersAreAdmin);
    if (!denied) return new grpc.ServerInterceptingCall(call);
    const { code, details, metadata } = toServiceError(new WalbError('PERMISSION_DENIED', denied));
    const refused = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata(() => call.sendStatus({ code: code!, details: details!, metadata }))
      .build();
    return new grpc.ServerInterceptingCall(call, { start: (next) => next(refused) });
  };
}
