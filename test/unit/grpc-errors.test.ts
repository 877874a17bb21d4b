// Stable error codes across gRPC: every code travels as its status and `walb-reason`, a client trusts only the
// reasons it knows, and cancellation is CANCELLED wherever it is reported.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ERROR_CODES, WalbError, errorCode, isErrorCode } from '../../src/common/errors';
import {
  REASON_KEY,
  STATUS_OF,
  connect,
  fromServiceError,
  loadProto,
  startGrpcServer,
  stopGrpcServer,
  toServiceError,
} from '../../src/common/grpc';
import { OperationRegistry } from '../../src/common/operations';
import type { ProtoGrpcType as CommonProto } from '../../src/generated/common';
import type { OperationsHandlers } from '../../src/generated/walb/v1/Operations';

function serviceError(code: grpc.status, details: string, reason?: string): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (reason !== undefined) metadata.set(REASON_KEY, reason);
  return Object.assign(new Error(details), { code, details, metadata });
}

test('every stable code goes out as its own status and reason and comes back as the same code', (t) => {
  for (const code of ERROR_CODES) {
    const e = toServiceError(new WalbError(code, `failed with ${code}`));
    t.is(e.code, STATUS_OF[code], code);
    t.deepEqual(e.metadata!.get(REASON_KEY), [code]);
    const back = fromServiceError(serviceError(e.code!, e.details!, code));
    t.is(back.code, code);
    t.is(back.message, `failed with ${code}`);
  }
});

test('an error without a stable code (a system error, a plain Error) goes out as INTERNAL', (t) => {
  const enoent = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
  t.is(errorCode(enoent), undefined);
  for (const err of [enoent, new Error('boom'), 'a string']) {
    const e = toServiceError(err);
    t.is(e.code, grpc.status.INTERNAL);
    t.deepEqual(e.metadata!.get(REASON_KEY), ['INTERNAL']);
  }
});

test('a reason the client does not know becomes INTERNAL, keeping the text and the reason', (t) => {
  t.false(isErrorCode('NO_SUCH_REASON'));
  const err = fromServiceError(serviceError(grpc.status.NOT_FOUND, 'volume v is gone', 'NO_SUCH_REASON'));
  t.is(err.code, 'INTERNAL');
  t.regex(err.message, /volume v is gone/);
  t.regex(err.message, /NO_SUCH_REASON/);
});

test('without a reason, UNAVAILABLE and CANCELLED statuses keep their meaning and the rest is INTERNAL', (t) => {
  t.is(fromServiceError(serviceError(grpc.status.UNAVAILABLE, 'no connection')).code, 'UNAVAILABLE');
  t.is(fromServiceError(serviceError(grpc.status.CANCELLED, 'Cancelled on client')).code, 'CANCELLED');
  t.is(fromServiceError(serviceError(grpc.status.DEADLINE_EXCEEDED, 'deadline')).code, 'INTERNAL');
});

/** A real Operations server on loopback whose Get fails as `fail` says. */
async function operationsServer(
  fail: (call: grpc.ServerUnaryCall<unknown, unknown>) => Partial<grpc.ServiceError>,
) {
  const { definition, proto } = loadProto<CommonProto>('walb/v1/common.proto');
  const ops = new OperationRegistry();
  const implementation: OperationsHandlers = {
    ...ops.service(),
    Get: (call, callback) => callback(fail(call)),
  };
  const { server, port } = await startGrpcServer(
    '127.0.0.1:0',
    [definition],
    [{ name: 'walb.v1.Operations', definition: proto.walb.v1.Operations.service, implementation }],
  );
  const client = connect(proto.walb.v1.Operations, `127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return { client, close: () => (client.close(), stopGrpcServer(server)) };
}

test('a peer that sends a reason we do not know is INTERNAL at the client, its message kept', async (t) => {
  const s = await operationsServer(() => serviceError(grpc.status.FAILED_PRECONDITION, 'not now', 'MADE_UP'));
  try {
    const err = await t.throwsAsync(s.client.Get({ id: 'x' }));
    t.is(errorCode(err), 'INTERNAL');
    t.regex(err.message, /not now.*MADE_UP/);
  } finally {
    await s.close();
  }
});

test('a server cancelling work answers status CANCELLED with reason CANCELLED', async (t) => {
  const s = await operationsServer(() => toServiceError(new WalbError('CANCELLED', 'cancelled')));
  try {
    const err = await t.throwsAsync(s.client.Get({ id: 'x' }));
    t.is(errorCode(err), 'CANCELLED');
  } finally {
    await s.close();
  }
});

test('a unary handler that throws a stable code reaches the client with that code', async (t) => {
  const s = await operationsServer(() => ({}));
  try {
    const err = await t.throwsAsync(s.client.Cancel({ id: 'no-such-op' }));
    t.is(errorCode(err), 'NOT_FOUND');
  } finally {
    await s.close();
  }
});

test('a cancelled operation ends as cancelled with error code CANCELLED, whatever its work threw', async (t) => {
  const ops = new OperationRegistry();
  const op = ops.start('full-backup', 'vol', async (h) => {
    await new Promise((resolve) => h.signal.addEventListener('abort', resolve));
    throw new WalbError('IO_ERROR', 'the read stopped');
  });
  ops.cancel(op.id!);
  const done = await ops.wait(op.id!);
  t.is(done.state, 'cancelled');
  t.is(done.errorCode, 'CANCELLED');
  t.is(done.error, 'the read stopped');
});

test('an operation whose work ends despite a cancel ends as done with its result, not as cancelled', async (t) => {
  const ops = new OperationRegistry();
  let cancelSent!: () => void;
  const sent = new Promise<void>((resolve) => (cancelSent = resolve));
  const op = ops.start('full-backup', 'vol', async () => {
    await sent;
    return '7';
  });
  ops.cancel(op.id!);
  cancelSent();
  const done = await ops.wait(op.id!);
  t.is(done.state, 'done');
  t.is(done.result, '7');
  t.is(done.errorCode, '');
});
