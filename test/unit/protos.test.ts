// The wire contract in proto/walb/v1 loads with the loader options the servers use, and declares the services
// and streaming shapes the servers and walbc rely on.
import test from 'ava';
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS } from '../../src/common/grpc';

function methods(
  file: string,
  service: string,
): Record<string, { requestStream: boolean; responseStream: boolean }> {
  const def = protoLoader.loadSync(file, LOADER_OPTIONS);
  const s = def[service] as unknown as Record<string, { requestStream: boolean; responseStream: boolean }>;
  if (!s) throw new Error(`${service} not in ${file}`);
  return s;
}

test('every service loads, and the data transfers are bidirectional streams (header, accept or reject, data, ack)', (t) => {
  const archive = methods('walb/v1/archive.proto', 'walb.v1.Archive');
  for (const m of ['FullSync', 'SendWdiff']) {
    t.true(archive[m].requestStream && archive[m].responseStream, m);
  }
  for (const m of ['InitVol', 'Restore', 'GetRestorable', 'DelRestored', 'ListRestored', 'Stop', 'Status'])
    t.false(archive[m].requestStream || archive[m].responseStream, m);
  const proxy = methods('walb/v1/proxy.proto', 'walb.v1.Proxy');
  t.true(proxy.SendWlog.requestStream && proxy.SendWlog.responseStream);
  for (const m of [
    'ArchiveInfoAdd',
    'ArchiveInfoDelete',
    'ArchiveInfoList',
    'Start',
    'Stop',
    'Kick',
    'IsWdiffSendError',
  ])
    t.truthy(proxy[m], m);
  const storage = methods('walb/v1/storage.proto', 'walb.v1.Storage');
  for (const m of ['InitVol', 'FullBackup', 'Start', 'Stop', 'Snapshot', 'Kick', 'IsOverflow', 'Status'])
    t.truthy(storage[m], m);
  const ops = methods('walb/v1/common.proto', 'walb.v1.Operations');
  t.true(ops.Watch.responseStream && !ops.Watch.requestStream);
  const wdev = methods('walb/v1/wdev.proto', 'walb.v1.WdevControl');
  t.truthy(wdev.SetOldestLsid);
});
