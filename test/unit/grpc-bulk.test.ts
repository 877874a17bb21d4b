// Bulk transfer plumbing: our servers advertise a wide HTTP/2 window and large frames (grpc-js has no option
// for it, so this pins the internals we rely on), and pre-encoded bulk messages decode as the proto says.
import test from 'ava';
import http2 from 'node:http2';
import { SERVER_WINDOW, loadProto, startGrpcServer, stopGrpcServer } from '../../src/common/grpc';
import { bulkMessage } from '../../src/common/bulk-message';
import { waitUntil } from '../waiting';

test('a server advertises the wide stream window and widens its connection window', async (t) => {
  const { definition } = loadProto('walb/v1/common.proto');
  const { server, port } = await startGrpcServer('127.0.0.1:0', [definition], []);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', () => resolve());
      session.once('error', reject);
    });
    t.is(session.remoteSettings.initialWindowSize, SERVER_WINDOW);
    // The connection window arrives as a WINDOW_UPDATE right after the settings.
    await waitUntil(
      () => (session.state.remoteWindowSize ?? 0) >= SERVER_WINDOW,
      'the connection window update',
      5000,
    );
    t.is(session.state.remoteWindowSize, SERVER_WINDOW);
  } finally {
    session.destroy();
    await stopGrpcServer(server);
  }
});

test('a pre-encoded bulk message decodes to its offset and bytes, for small and large offsets and sizes', (t) => {
  const { definition } = loadProto('walb/v1/archive.proto');
  const method = (definition['walb.v1.Archive'] as Record<string, { requestDeserialize(b: Buffer): unknown }>)
    .FullSync;
  for (const [offset, length] of [
    [0, 0],
    [0, 1],
    [127, 128],
    [5 * 2 ** 40 + 512, 1 << 20],
    [2 ** 50, 300],
  ]) {
    const m = bulkMessage(2, offset, length);
    for (let i = 0; i < length; i++) m.data[i] = (i * 7 + offset) & 0xff;
    const decoded = method.requestDeserialize(m.message.bytes) as {
      part: string;
      data: { offset: number; data: Buffer };
    };
    t.is(decoded.part, 'data');
    t.is(decoded.data.offset, offset);
    t.deepEqual(Buffer.from(decoded.data.data), Buffer.from(m.data), `offset ${offset} length ${length}`);
  }
});
