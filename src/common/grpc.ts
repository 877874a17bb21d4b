// gRPC plumbing shared by every server and client: proto loading (one set of loader options, matching the
// generated types), servers that always carry health and reflection (so grpcurl works without proto files),
// and one mapping between our stable error codes and gRPC status codes.
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { WalbError, errorCode, errorMessage, isErrorCode, type ErrorCode } from './errors';
import { ServerHealth } from './health';

// dist/src/common/grpc.js -> <root>/proto
export const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

/** Must agree with the flags of `npm run build:proto` (the generated types assume them). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** A request already in protobuf wire form (see bulk-message.ts); clients send its bytes as they are. */
export class EncodedMessage {
  constructor(
    readonly bytes: Buffer,
    /** Called once gRPC has taken its copy of the bytes (they may then be reused). */
    readonly release?: () => void,
  ) {}
}

export function loadProto<T>(file: string): { definition: protoLoader.PackageDefinition; proto: T } {
  const definition = protoLoader.loadSync(file, LOADER_OPTIONS);
  // Bulk data skips the encoder's copy: every request serializer passes an EncodedMessage through.
  for (const service of Object.values(definition)) {
    if (!('format' in service))
      for (const method of Object.values(service as protoLoader.ServiceDefinition)) {
        const serialize = method.requestSerialize;
        method.requestSerialize = (m: object) => (m instanceof EncodedMessage ? m.bytes : serialize(m));
      }
  }
  return { definition, proto: grpc.loadPackageDefinition(definition) as unknown as T };
}

/**
 * Options of every client channel between our servers and from controllers: a peer that was down is usually back
 * within seconds (a restart), so reconnect soon instead of grpc's default back-off of up to two minutes.
 */
export const CLIENT_OPTIONS: grpc.ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2000,
  'grpc.max_receive_message_length': 64 << 20,
  'grpc.max_send_message_length': 64 << 20,
};

/** HOST:PORT with the port replaced: another port of the same host (`port` 0: one the system picks). */
export function withPort(address: string, port: number): string {
  return `${address.slice(0, address.lastIndexOf(':'))}:${port}`;
}

/** Mutual TLS between servers and from controllers: PEM files; all three empty means plaintext. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/** A server's TLS block: the files, and whether a certificate that names no role is taken as admin (roles.ts). */
export interface ServerTls extends TlsFiles {
  unnamedPeersAreAdmin: boolean;
}

export function tlsEnabled(tls: TlsFiles | undefined): tls is TlsFiles {
  return !!tls && !!(tls.ca || tls.cert || tls.key);
}

function readPem(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new WalbError('CONFIG', `tls.${what}: cannot read ${file}: ${errorMessage(err)}`);
  }
}

/** The PEM texts of a TLS block (for gRPC here and the native bulk path), undefined for plaintext. */
export function tlsPem(tls: TlsFiles | undefined): { ca: string; cert: string; key: string } | undefined {
  if (!tlsEnabled(tls)) return undefined;
  return {
    ca: readPem(tls.ca, 'ca'),
    cert: readPem(tls.cert, 'cert'),
    key: readPem(tls.key, 'key'),
  };
}

/** A server's credentials: with TLS, clients must present a certificate signed by the CA. */
export function serverCredentials(tls: TlsFiles | undefined): grpc.ServerCredentials {
  const pem = tlsPem(tls);
  if (!pem) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    Buffer.from(pem.ca),
    [{ private_key: Buffer.from(pem.key), cert_chain: Buffer.from(pem.cert) }],
    true,
  );
}

/** A client's credentials: with TLS, it checks the server against the CA and presents its own certificate. */
export function channelCredentials(tls: TlsFiles | undefined): grpc.ChannelCredentials {
  const pem = tlsPem(tls);
  if (!pem) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(Buffer.from(pem.ca), Buffer.from(pem.key), Buffer.from(pem.cert));
}

/** The reason a server gives along with the status code; clients act on it. */
export const REASON_KEY = 'walb-reason';

/** The gRPC status of every stable code (docs/wire-protocol.md); the compiler makes sure none is left out. */
export const STATUS_OF: Record<ErrorCode, grpc.status> = {
  USAGE: grpc.status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  CORRUPTION: grpc.status.DATA_LOSS,
  TRUNCATED: grpc.status.DATA_LOSS,
  UNSUPPORTED: grpc.status.UNIMPLEMENTED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  CANCELLED: grpc.status.CANCELLED,
  OUT_OF_MEMORY: grpc.status.RESOURCE_EXHAUSTED,
  IO_ERROR: grpc.status.INTERNAL,
  CONFIG: grpc.status.INTERNAL,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  INTERNAL: grpc.status.INTERNAL,
};

export function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  const reason = errorCode(err) ?? 'INTERNAL';
  const metadata = new grpc.Metadata();
  metadata.set(REASON_KEY, reason);
  return { code: STATUS_OF[reason], details: errorMessage(err), metadata };
}

/** The cause of a failed connection in words, from grpc-js's text (which names the system error). */
function connectionCause(details: string): string {
  if (/ECONNREFUSED/.test(details)) return 'connection refused';
  if (/ENOENT/.test(details)) return 'no socket file there';
  if (/EACCES|EPERM/.test(details)) return 'permission denied';
  if (/ENOTFOUND|EAI_AGAIN/.test(details)) return 'unknown host name';
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH/.test(details)) return 'no route or no answer';
  return 'no connection';
}

/**
 * One sentence for a server that cannot be reached at `target` (a channel target as grpc-js names it: `dns:` and
 * `unix:` forms), instead of grpc-js's internals.
 */
export function unreachableMessage(target: string, details: string): string {
  const address = target.replace(/^dns:(\/\/\/)?/, '');
  const check = address.startsWith('unix:')
    ? 'is walb-wdevd running, and do --run-dir or --socket name its socket?'
    : 'is the server running and listening there?';
  return `cannot reach ${address} (${connectionCause(details)}): ${check}`;
}

/**
 * Client side: a failed call becomes a WalbError whose code is the server's reason. A reason we do not know
 * (a newer or a foreign peer) is INTERNAL, its text kept; without a reason, the status says what it can — a
 * connection that failed to `target` (when given) in one sentence naming it.
 */
export function fromServiceError(err: grpc.ServiceError, target?: string): WalbError {
  const details = err.details || err.message;
  const reason = err.metadata?.get(REASON_KEY)?.[0];
  if (reason !== undefined) {
    if (isErrorCode(reason)) return new WalbError(reason, details);
    return new WalbError('INTERNAL', `${details} (unknown reason ${String(reason)})`);
  }
  if (err.code === grpc.status.UNAVAILABLE)
    return new WalbError('UNAVAILABLE', target ? unreachableMessage(target, details) : details);
  if (err.code === grpc.status.CANCELLED) return new WalbError('CANCELLED', details);
  return new WalbError('INTERNAL', details);
}

/** Wraps an async handler as a unary gRPC handler with error mapping. */
export function unary<Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err)),
    );
  };
}

/** A method of a generated client as this project calls it (the generated overloads end with these forms). */
type PromisedMethod<M> = M extends (...args: never[]) => infer R
  ? R extends grpc.ClientDuplexStream<infer Req, infer Res>
    ? (options?: grpc.CallOptions) => grpc.ClientDuplexStream<Req, Res>
    : R extends grpc.ClientReadableStream<infer Res>
      ? M extends (argument: infer Req, options?: grpc.CallOptions) => unknown
        ? (req: Req, options?: grpc.CallOptions) => grpc.ClientReadableStream<Res>
        : never
      : R extends grpc.ClientWritableStream<unknown>
        ? never // client streams: none of ours is called through a generated client
        : M extends (argument: infer Req, callback: grpc.requestCallback<infer Res>) => grpc.ClientUnaryCall
          ? (req: Req, timeoutMs?: number) => Promise<Res>
          : never
  : never;

/**
 * A generated client whose unary methods return promises (failures as WalbError, see fromServiceError) and
 * whose streaming methods are the client's own: the compiler checks method names, requests and replies.
 */
export type Promised<C extends grpc.Client> = {
  readonly [
    K in keyof C as K extends keyof grpc.Client ? never : K extends Capitalize<K & string> ? K : never
  ]: PromisedMethod<C[K]>;
} & {
  close(): void;
  /** A unary method named at run time (walbc call: the operator types it); undefined if the service has none. */
  unaryMethod(name: string): ((req: object, timeoutMs?: number) => Promise<unknown>) | undefined;
};

/** The one way our programs call a gRPC service: `timeoutMs` is the default deadline of unary calls (0: none). */
export function promisify<C extends grpc.Client>(client: C, timeoutMs = 0): Promised<C> {
  const service = (client.constructor as unknown as { service: grpc.ServiceDefinition }).service;
  const target = client.getChannel().getTarget();
  const unaryCall = (m: grpc.MethodDefinition<object, unknown>, req: object, ms = timeoutMs) =>
    new Promise<unknown>((resolve, reject) => {
      const options: grpc.CallOptions = ms > 0 ? { deadline: Date.now() + ms } : {};
      client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, options, (err, res) =>
        err ? reject(fromServiceError(err, target)) : resolve(res),
      );
    });
  const methods: Record<string, unknown> = {
    close: () => client.close(),
    unaryMethod: (name: string) => {
      const m = Object.hasOwn(service, name) ? service[name] : undefined;
      if (!m || m.requestStream || m.responseStream) return undefined;
      return (req: object, ms?: number) => unaryCall(m, req, ms);
    },
  };
  for (const [name, m] of Object.entries(service)) {
    if (m.requestStream && m.responseStream)
      methods[name] = (options?: grpc.CallOptions) =>
        client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, options);
    else if (m.responseStream)
      methods[name] = (req: object, options: grpc.CallOptions = {}) =>
        client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, req, options);
    else if (!m.requestStream) methods[name] = (req: object, ms?: number) => unaryCall(m, req, ms);
  }
  return methods as Promised<C>;
}

/** A generated client of `address` with our channel options, promisified. */
export function connect<C extends grpc.Client>(
  Client: new (address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions) => C,
  address: string,
  credentials: grpc.ChannelCredentials,
  timeoutMs = 0,
): Promised<C> {
  return promisify(new Client(address, credentials, CLIENT_OPTIONS), timeoutMs);
}

/** One service of a server: the generated handler type `H` checks the implementation against the proto. */
export interface ServiceBinding<
  H extends grpc.UntypedServiceImplementation = grpc.UntypedServiceImplementation,
> {
  /** Fully qualified, e.g. walb.v1.WdevControl */
  name: string;
  definition: grpc.ServiceDefinition<H>;
  implementation: H;
}

// The reflection service's own protos, so that reflection lists it like the other services it serves.
const REFLECTION_PROTOS = ['v1', 'v1alpha'].map((v) =>
  path.join(
    path.dirname(require.resolve('@grpc/reflection/package.json')),
    'build',
    'proto',
    'grpc',
    'reflection',
    v,
    'reflection.proto',
  ),
);
const REFLECTION_SERVICES = [
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];

/**
 * A gRPC server with health and reflection. `address` is `unix:/path` or `host:port`. Reflection describes the
 * types of every package given and lists exactly the services this server serves. Health answers NOT_SERVING
 * until the caller says `health.serving()` (its start is complete). `interceptors` see every call first (the role
 * check of roles.ts).
 */
export async function startGrpcServer(
  address: string,
  packages: protoLoader.PackageDefinition[],
  services: ServiceBinding[],
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
  interceptors: grpc.ServerInterceptor[] = [],
): Promise<{ server: grpc.Server; port: number; health: ServerHealth }> {
  // Data messages are about 1 MiB; leave room for the odd larger one.
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 64 << 20,
    'grpc.max_send_message_length': 64 << 20,
    interceptors,
  });
  widenFlowControl(server);
  for (const s of services) server.addService(s.definition, s.implementation);
  const healthService = new HealthImplementation();
  const health = new ServerHealth(
    healthService,
    services.map((s) => s.name),
  );
  healthService.addToServer(server);
  // One reflection service describing ours and the health service (reflection can be added only once).
  const served = [...services.map((s) => s.name), 'grpc.health.v1.Health', ...REFLECTION_SERVICES];
  const described = [healthProtoPath, ...REFLECTION_PROTOS].map((f) =>
    protoLoader.loadSync(f, LOADER_OPTIONS),
  );
  new ReflectionService(Object.assign({}, ...described, ...packages), { services: served }).addToServer(
    server,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port, health };
}

/** HTTP/2 receive window of our servers, per stream and per connection (see widenFlowControl). */
export const SERVER_WINDOW = 32 << 20;

/**
 * grpc-js servers keep HTTP/2's default 64 KiB receive window, which caps a bulk stream at a few hundred MB/s
 * on loopback, and grpc-js has no option for it. We reach into two of its internals: the settings it passes to
 * http2.createServer (the stream window) and the hook where it sets up each listener (to widen the connection
 * window of every session). test/unit/grpc-bulk.test.ts fails if a grpc-js upgrade moves them.
 */
function widenFlowControl(server: grpc.Server): void {
  type Session = { setLocalWindowSize(n: number): void };
  type Listener = { on(event: 'session', f: (s: Session) => void): void };
  const internals = server as unknown as {
    commonServerOptions?: { settings?: Record<string, number> };
    _setupHandlers?: (listener: Listener | null, ...rest: unknown[]) => void;
  };
  const options = internals.commonServerOptions;
  const setup = internals._setupHandlers;
  if (!options || !setup) return;
  // (A larger maxFrameSize would not help: Node's HTTP/2 client sends 16 KiB DATA frames whatever the peer allows.)
  options.settings = { ...options.settings, initialWindowSize: SERVER_WINDOW };
  internals._setupHandlers = function (this: unknown, listener, ...rest) {
    listener?.on('session', (s) => s.setLocalWindowSize(SERVER_WINDOW));
    return setup.call(this, listener, ...rest);
  };
}

export function stopGrpcServer(server: grpc.Server, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function requireField(value: string | undefined, name: string): string {
  if (!value) throw new WalbError('INVALID_ARGUMENT', `${name} is required`);
  return value;
}
