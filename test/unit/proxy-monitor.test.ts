// The storage's view of its proxies (src/storage/proxy-monitor.ts) against a real gRPC server that answers health
// checks: a kick that finds a proxy not answering yet is not lost until the next heartbeat.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { loadProto, startGrpcServer, stopGrpcServer } from '../../src/common/grpc';
import { silentLog } from '../../src/common/log';
import type { ProtoGrpcType as ProxyProto } from '../../src/generated/proxy';
import { ProxyMonitor } from '../../src/storage/proxy-monitor';
import { waitUntil } from '../waiting';

test('a proxy that fails the check of a kick is retried within seconds, not a heartbeat interval later', async (t) => {
  // A proxy still starting: its health says NOT_SERVING until serving().
  const { definition, proto } = loadProto<ProxyProto>('walb/v1/proxy.proto');
  const { server, port, health } = await startGrpcServer(
    '127.0.0.1:0',
    [definition],
    [{ name: 'walb.v1.Proxy', definition: proto.walb.v1.Proxy.service, implementation: {} }],
  );
  let cameBack = 0;
  const monitor = new ProxyMonitor(
    [`127.0.0.1:${port}`],
    { intervalMs: 3_600_000, timeoutMs: 3000, credentials: grpc.credentials.createInsecure() },
    silentLog,
    () => cameBack++,
  );
  monitor.start();
  try {
    monitor.markDown(0, 'a transfer could not reach it');
    await monitor.kick(); // none available: checked at once, and it is not serving yet
    const [afterKick] = monitor.list();
    t.false(afterKick.available);
    t.is(afterKick.lastError, 'not serving');
    t.is(cameBack, 0);

    health.serving();
    await waitUntil(async () => monitor.list()[0].available, 'the proxy is available again', 15_000);
    t.is(cameBack, 1, 'the storage was told once');
    t.is(monitor.list()[0].lastError, '');
  } finally {
    monitor.stop();
    await stopGrpcServer(server);
  }
});
