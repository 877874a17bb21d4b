// The addon is two files: the bulk classes, which link libgrpc++, load on first use, so that a process that never
// moves bulk bytes (walb-wdevd, walb-proxy) does not load gRPC's libraries at its start.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const NATIVE = path.resolve(__dirname, '..', '..', 'src', 'native');

/** Whether a fresh process has libgrpc mapped after loading the addon, then after using `native.BulkSender`. */
function grpcMapped(): { atLoad: boolean; afterBulk: boolean } {
  const script = `
    const fs = require('node:fs');
    const grpc = () => fs.readFileSync('/proc/self/maps', 'utf8').includes('libgrpc');
    const { native } = require(${JSON.stringify(NATIVE)});
    const atLoad = grpc();
    if (typeof native.BulkSender !== 'function' || typeof native.BulkReceiver !== 'function') process.exit(3);
    console.log(JSON.stringify({ atLoad, afterBulk: grpc() }));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the probe exited with ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { atLoad: boolean; afterBulk: boolean };
}

test('loading the addon does not load libgrpc; the bulk classes load it on first use', (t) => {
  t.deepEqual(grpcMapped(), { atLoad: false, afterBulk: true });
});
