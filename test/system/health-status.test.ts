// What tells an operator that a group needs them (docs/operations.md, "Health"): the gRPC health of each server
// and the exit status of walbc status. A proxy killed makes status exit 1 naming it; the log overflowing makes
// the storage's walb.v1.Storage NOT_SERVING and status exit 1 naming the overflow, with typed --json fields.
import test from 'ava';
import crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { LOADER_OPTIONS } from '../../src/common/grpc';
import { Group } from '../group-fixture';
import { P } from '../nbd-client';
import { waitUntil } from '../waiting';

type CheckFn = (req: { service: string }, cb: (err: Error | null, res: { status: string }) => void) => void;
const Health = (
  grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS)) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } };
  }
).grpc.health.v1.Health;

async function health(address: string, service: string): Promise<string> {
  const client = new Health(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) =>
      (client as unknown as { Check: CheckFn }).Check({ service }, (err, res) =>
        err ? reject(err) : resolve(res.status),
      ),
    );
  } finally {
    client.close();
  }
}

test.serial(
  'walbc status exits 1 naming an unreachable proxy, then an overflow; the overflowed storage is NOT_SERVING for walb.v1.Storage until the volume is reset',
  async (t) => {
    const g = await Group.start(t, 'health-status', { ldevBytes: 4 << 20 });
    const [storage, proxy, archive] = [g.storages[0], g.proxies[0], g.archives[0]];
    try {
      const { walbc, ok } = g;
      await ok('init-vol', 'ovf', 'w0');
      await ok('full-backup', 'ovf', '--wait');
      for (const [s, service] of [
        [storage, 'walb.v1.Storage'],
        [proxy, 'walb.v1.Proxy'],
        [archive, 'walb.v1.Archive'],
      ] as const) {
        t.is(await health(s.address, ''), 'SERVING', s.binary);
        t.is(await health(s.address, service), 'SERVING', s.binary);
      }
      const healthy = await walbc('status', '--json');
      t.is(healthy.code, 0, healthy.stderr);
      const typed = JSON.parse(healthy.stdout) as {
        ok: boolean;
        problems: string[];
        rows: { server: string; storage?: { doneGid: unknown; overflow: unknown; logCapacityPb: unknown } }[];
      };
      t.true(typed.ok);
      t.deepEqual(typed.problems, []);
      const s0 = typed.rows.find((r) => r.server === 's0')!;
      t.is(typeof s0.storage!.doneGid, 'number');
      t.is(s0.storage!.overflow, false);
      t.true((s0.storage!.logCapacityPb as number) > 0);

      await proxy.kill();
      const down = await walbc('status');
      t.is(down.code, 1);
      t.regex(down.stdout, /^p0\tproxy\t-\tUNREACHABLE\t/m, 'the table is still printed');
      t.regex(down.stderr, /^walbc status: needs an operator: p0 is unreachable \[FAILED_PRECONDITION\]\n$/);

      const c = await g.nbd();
      for (let i = 0; i < 12; i++)
        t.is(await c.writeAt(i + 1, (i % 8) << 20, crypto.randomBytes(1 << 20)), 0);
      t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
      await waitUntil(
        async () => (await health(storage.address, 'walb.v1.Storage')) === 'NOT_SERVING',
        'the overflowed storage NOT_SERVING',
        30_000,
      );
      t.is(await health(storage.address, ''), 'SERVING', 'the server itself still serves');
      const overflowed = await walbc('status', 'ovf');
      t.is(overflowed.code, 1);
      t.regex(overflowed.stdout, /^s0\tstorage\tovf\t\w+\t.*OVERFLOW$/m);
      t.regex(overflowed.stderr, /needs an operator: the log of ovf on s0 overflowed; p0 is unreachable \[/);
      const json = JSON.parse((await walbc('status', 'ovf', '--json')).stdout) as {
        ok: boolean;
        rows: { server: string; storage?: { overflow: boolean } }[];
      };
      t.false(json.ok);
      t.true(json.rows.find((r) => r.server === 's0')!.storage!.overflow);

      // reset-vol clears the overflow: the storage serves again.
      await waitUntil(
        async () => (await walbc('get-state', 'ovf', 's0')).stdout.trim() === 'Stopped',
        'storage Stopped',
        30_000,
      );
      t.is(await ok('reset-vol', 'ovf', 's0'), 'SyncReady');
      await waitUntil(
        async () => (await health(storage.address, 'walb.v1.Storage')) === 'SERVING',
        'SERVING after reset-vol',
        30_000,
      );
      t.pass();
    } finally {
      await g.cleanup();
    }
  },
);
