// The NBD server (src/nbd: the handshake in TypeScript, the transmission phase in C++) against real clients —
// nbdinfo, nbdcopy, qemu-io, qemu-img, fio's nbd engine — and against a raw socket that breaks the protocol on
// purpose. The export is a sparse temp file behind the C++ file backend, with its fault injection where a test needs
// a slow or failing device.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { NbdFileCall, NbdFileFault } from '../../src/native';
import {
  FileExport,
  jsonLinesLogger,
  MapExportRegistry,
  NbdServer,
  type NbdExport,
  type NbdLogRecord,
  type NbdServerOptions,
} from '../../src/nbd';
import { WdevDevice } from '../../src/wdev/device';
import { P, RawClient, goData } from '../nbd-client';
import { run, type RunResult } from '../processes';
import { tempArea } from '../temp-files';
import { waitUntil } from '../waiting';
import { makeWdevFiles } from '../wdevd-harness';

const KiB = 1024;
const MiB = 1024 * 1024;
const EPERM = 1;
const EIO = 5;
const EINVAL = 22;
const ENOSPC = 28;

const area = tempArea('nbd');
const opened: FileExport[] = [];
test.after.always(() => {
  for (const e of opened) e.close();
  area.cleanup();
});

// ---------------------------------------------------------------------------------------------------------------
// Exports: a sparse file served by the C++ file backend, every request recorded.

async function fileExport(
  name: string,
  size: number,
  opts: { description?: string; readOnly?: boolean; fill?: number; faults?: NbdFileFault[] } = {},
): Promise<FileExport> {
  const file = area.name(`${name}.img`);
  await fs.promises.writeFile(file, '');
  await fs.promises.truncate(file, size);
  if (opts.fill !== undefined) await fs.promises.writeFile(file, Buffer.alloc(size, opts.fill));
  const e = new FileExport(file, {
    name,
    description: opts.description,
    readOnly: opts.readOnly,
    faults: opts.faults,
    record: true,
  });
  opened.push(e);
  return e;
}

function contents(e: FileExport): Buffer {
  return fs.readFileSync(e.path);
}

/** Every backend call aligned to 512 bytes, as the server promises. */
function allAligned(calls: NbdFileCall[]): boolean {
  return calls.every((c) => c.offset % 512 === 0 && c.length % 512 === 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Server and process helpers.

interface Started {
  server: NbdServer;
  sock: string;
  logs: NbdLogRecord[];
  uri: (name: string) => string;
}

async function startServer(
  t: ExecutionContext,
  exports: NbdExport[],
  opts: Partial<NbdServerOptions> & { defaultName?: string } = {},
): Promise<Started> {
  const logs: NbdLogRecord[] = [];
  const sock = area.name('nbd.sock');
  const server = new NbdServer({
    registry: new MapExportRegistry(exports, opts.defaultName),
    listen: { path: sock },
    logger: (r) => logs.push(r),
    ...opts,
  });
  await server.listen();
  t.teardown(() => server.destroy());
  return { server, sock, logs, uri: (name) => server.uri(name) };
}

/** Runs an NBD client in the test directory: some drop files where they run (fio's verify state). */
function runClient(cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run(cmd, args, { cwd: area.dir, timeoutMs });
}

function randomImage(file: string, size: number, holes: (i: number) => boolean): Buffer {
  // 1 MiB random blocks, some left as holes (zeroes) so that copy tools use their zero paths
  const img = Buffer.alloc(size);
  for (let o = 0, i = 0; o < size; o += MiB, i++) {
    if (!holes(i)) crypto.randomFillSync(img, o, Math.min(MiB, size - o));
  }
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  const fd = fs.openSync(file, 'r+');
  for (let o = 0, i = 0; o < size; o += MiB, i++) {
    if (!holes(i)) fs.writeSync(fd, img, o, Math.min(MiB, size - o), o);
  }
  fs.closeSync(fd);
  return img;
}

// ---------------------------------------------------------------------------------------------------------------
// Raw client.

// ---------------------------------------------------------------------------------------------------------------
// Real clients.

test('nbdinfo: size, flags, block sizes, --list with descriptions, default and unknown export, TCP', async (t) => {
  t.timeout(60_000);
  const disk = await fileExport('disk0', 8 * MiB, { description: 'first disk' });
  const ro = await fileExport('ro0', 1 * MiB, { description: 'read-only disk', readOnly: true });
  const { sock, uri, logs } = await startServer(t, [disk, ro], { defaultName: 'disk0' });

  const r = await runClient('nbdinfo', ['--json', uri('disk0')]);
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { protocol: string; exports: Record<string, unknown>[] };
  t.is(info.protocol, 'newstyle-fixed');
  const e = info.exports[0];
  t.like(e, {
    'export-name': 'disk0',
    description: 'first disk',
    'export-size': 8 * MiB,
    is_read_only: false,
    can_flush: true,
    can_fua: true,
    can_trim: true,
    can_zero: true,
    can_multi_conn: true,
    block_size_minimum: 512,
    block_size_preferred: 4096,
    block_size_maximum: 32 * MiB,
  });

  const r2 = await runClient('nbdinfo', ['--json', uri('ro0')]);
  t.is(r2.code, 0, r2.stderr);
  t.like((JSON.parse(r2.stdout) as typeof info).exports[0], {
    'export-size': 1 * MiB,
    is_read_only: true,
    can_trim: false,
    can_zero: false,
  });

  const list = await runClient('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${sock}`]);
  t.is(list.code, 0, list.stderr);
  const listed = (JSON.parse(list.stdout) as typeof info).exports.map((x) => [
    x['export-name'],
    x.description,
  ]);
  t.deepEqual(listed.sort(), [
    ['disk0', 'first disk'],
    ['ro0', 'read-only disk'],
  ]);

  const def = await runClient('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]);
  t.is(def.code, 0, def.stderr);
  t.is(def.stdout.trim(), String(8 * MiB));

  const unknown = await runClient('nbdinfo', ['--size', uri('nope')]);
  t.not(unknown.code, 0);
  t.true(logs.some((l) => l.event === 'connection-open'));
  t.true(logs.some((l) => l.event === 'connection-close'));

  // TCP on loopback
  const tcp = new NbdServer({
    registry: new MapExportRegistry([disk]),
    listen: { port: 0 },
    logger: () => {},
  });
  const addr = await tcp.listen();
  t.teardown(() => tcp.destroy());
  t.true('port' in addr && addr.port > 0);
  const viaTcp = await runClient('nbdinfo', ['--size', tcp.uri('disk0')]);
  t.is(viaTcp.code, 0, viaTcp.stderr);
  t.is(viaTcp.stdout.trim(), String(8 * MiB));
  await tcp.close();
  t.throws(
    () => new NbdServer({ registry: new MapExportRegistry([disk]), listen: { host: '0.0.0.0', port: 0 } }),
    { instanceOf: RangeError },
    'no unauthenticated NBD beyond loopback unless asked for',
  );
});

test('nbdcopy: a sparse image written to an export (multi-conn) and read back is byte-identical', async (t) => {
  t.timeout(120_000);
  const size = 24 * MiB;
  const disk = await fileExport('disk0', size, { fill: 0xee }); // garbage the zero paths must overwrite
  const { uri, logs } = await startServer(t, [disk]);
  const src = area.name('src.img');
  const img = randomImage(src, size, (i) => i % 3 === 1);

  const w = await runClient('nbdcopy', ['--flush', src, uri('disk0')]);
  t.is(w.code, 0, w.stderr);
  t.true(contents(disk).equals(img), 'the backend file holds the image');
  t.true(
    disk.calls().some((c) => c.op === 'flush'),
    'nbdcopy --flush reached the backend',
  );
  t.true(allAligned(disk.calls()));
  const conns = logs.filter((l) => l.event === 'connection-export').length;
  t.true(conns >= 2, `nbdcopy used ${conns} connection(s); CAN_MULTI_CONN lets it use several`);

  const out = area.name('out.img');
  const r = await runClient('nbdcopy', [uri('disk0'), out]);
  t.is(r.code, 0, r.stderr);
  t.true(fs.readFileSync(out).equals(img), 'read back byte for byte');
});

test('qemu-io: patterns, FUA, flush, discard, write zeroes; unaligned I/O reaches the backend aligned', async (t) => {
  t.timeout(60_000);
  const disk = await fileExport('disk0', 4 * MiB);
  const { uri } = await startServer(t, [disk]);
  const cmds = [
    'write -P 0xab 0 64k',
    'read -P 0xab 0 64k',
    'write -f -P 0x11 64k 4k', // FUA
    'read -P 0x11 64k 4k',
    'flush',
    'write -P 0x22 128k 64k',
    'write -z 128k 64k', // NBD_CMD_WRITE_ZEROES
    'read -P 0 128k 64k',
    'discard 1M 64k', // NBD_CMD_TRIM
    'write -P 0xcd 100 1000', // unaligned: qemu does read-modify-write of 512-byte blocks
    'read -P 0xab 0 100',
    'read -P 0xcd 100 1000',
    'read -P 0xab 1100 64436',
    'aio_write -P 0x33 2M 256k',
    'aio_write -P 0x44 3M 256k',
    'aio_flush',
    'read -P 0x33 2M 256k',
    'read -P 0x44 3M 256k',
  ];
  // qemu-io's default cache mode is writethrough, which sets FUA on every write; writeback leaves FUA to `write -f`
  const r = await runClient('qemu-io', [
    '-f',
    'raw',
    '-t',
    'writeback',
    ...cmds.flatMap((c) => ['-c', c]),
    uri('disk0'),
  ]);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.notRegex(r.stdout + r.stderr, /Pattern verification failed|error|failed/i);

  const ops = new Set(disk.calls().map((c) => c.op));
  for (const op of ['read', 'write', 'flush', 'trim', 'writeZeroes'] as const)
    t.true(ops.has(op), `backend saw ${op}`);
  t.deepEqual(
    disk
      .calls()
      .filter((c) => c.op === 'write' && c.fua)
      .map((c) => c.offset),
    [64 * KiB],
    'write -f, and only it, arrived with FUA',
  );
  t.true(allAligned(disk.calls()), 'every request the backend saw was 512-aligned');
  // the unaligned 1000-byte write at 100 became a whole-sector write covering [0, 1536)
  t.true(disk.calls().some((c) => c.op === 'write' && c.offset === 0 && c.length === 1536));

  const data = contents(disk);
  t.true(data.subarray(0, 100).equals(Buffer.alloc(100, 0xab)));
  t.true(data.subarray(100, 1100).equals(Buffer.alloc(1000, 0xcd)));
  t.true(data.subarray(1100, 64 * KiB).equals(Buffer.alloc(64 * KiB - 1100, 0xab)));
  t.true(data.subarray(128 * KiB, 192 * KiB).equals(Buffer.alloc(64 * KiB)));
});

test('qemu-img: info and convert to and from the export, compare', async (t) => {
  t.timeout(120_000);
  const size = 16 * MiB;
  const disk = await fileExport('disk0', size, { fill: 0x5a });
  const { uri } = await startServer(t, [disk]);

  const info = await runClient('qemu-img', ['info', '--output=json', uri('disk0')]);
  t.is(info.code, 0, info.stderr);
  t.is((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'], size);

  const src = area.name('src.img');
  const img = randomImage(src, size, (i) => i % 4 === 0);
  const conv = await runClient('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, uri('disk0')]);
  t.is(conv.code, 0, conv.stderr);
  t.true(contents(disk).equals(img));

  const cmp = await runClient('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri('disk0')]);
  t.is(cmp.code, 0, cmp.stdout + cmp.stderr);

  const out = area.name('out.img');
  const back = await runClient('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('disk0'), out]);
  t.is(back.code, 0, back.stderr);
  t.true(fs.readFileSync(out).equals(img));
});

test('fio nbd engine: random writes at queue depth 16 on two connections, verified', async (t) => {
  t.timeout(120_000);
  const disk = await fileExport('disk0', 16 * MiB);
  const { uri } = await startServer(t, [disk]);
  const r = await runClient(
    'fio',
    [
      '--name=nbdverify',
      '--ioengine=nbd',
      `--uri=${uri('disk0')}`,
      '--rw=randwrite',
      '--bs=4k',
      '--size=4m',
      '--numjobs=2',
      '--offset_increment=4m',
      '--iodepth=16',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0',
      '--group_reporting',
      '--output-format=json',
    ],
    90_000,
  );
  t.is(r.code, 0, r.stdout + r.stderr);
  const job = (
    JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
      jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[];
    }
  ).jobs[0];
  t.is(job.error, 0);
  t.is(job.write.io_bytes, 8 * MiB);
  t.is(job.read.io_bytes, 8 * MiB, 'everything written was read back and verified');
});

// ---------------------------------------------------------------------------------------------------------------
// Handshake details with a raw socket.

test('handshake: INFO replies, LIST, unsupported options, unknown export, then GO on the same connection', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 2 * MiB, { description: 'd0' });
  const { sock } = await startServer(t, [disk], { defaultName: 'disk0' });
  const c = await RawClient.handshake(sock);

  for (const opt of [
    P.NBD_OPT_STRUCTURED_REPLY,
    P.NBD_OPT_STARTTLS,
    P.NBD_OPT_LIST_META_CONTEXT,
    P.NBD_OPT_SET_META_CONTEXT,
    0x1234,
  ]) {
    c.option(opt, opt === 0x1234 ? Buffer.alloc(100, 7) : Buffer.alloc(0));
    const r = await c.optReply();
    t.is(r.option, opt);
    t.is(r.type, P.NBD_REP_ERR_UNSUP, `option ${opt}`);
  }

  c.option(P.NBD_OPT_INFO, goData('nope', []));
  const unk = await c.optReply();
  t.is(unk.type, P.NBD_REP_ERR_UNKNOWN);

  c.option(P.NBD_OPT_INFO, Buffer.from([0, 0, 0, 50, 0, 0])); // name longer than the data
  t.is((await c.optReply()).type, P.NBD_REP_ERR_INVALID);

  c.option(P.NBD_OPT_LIST, Buffer.from('x'));
  t.is((await c.optReply()).type, P.NBD_REP_ERR_INVALID);
  c.option(P.NBD_OPT_LIST);
  const server = await c.optReply();
  t.is(server.type, P.NBD_REP_SERVER);
  const nameLen = server.data.readUInt32BE(0);
  t.is(server.data.subarray(4, 4 + nameLen).toString(), 'disk0');
  t.is(server.data.subarray(4 + nameLen).toString(), 'd0');
  t.is((await c.optReply()).type, P.NBD_REP_ACK);

  // INFO on the default export (empty name) with every information type requested
  c.option(
    P.NBD_OPT_INFO,
    goData('', [
      P.NBD_INFO_NAME,
      P.NBD_INFO_DESCRIPTION,
      P.NBD_INFO_BLOCK_SIZE,
      0x7777 /* unknown: ignored */,
    ]),
  );
  const infos = new Map<number, Buffer>();
  for (;;) {
    const r = await c.optReply();
    if (r.type === P.NBD_REP_ACK) break;
    t.is(r.type, P.NBD_REP_INFO);
    infos.set(r.data.readUInt16BE(0), r.data.subarray(2));
  }
  const ex = infos.get(P.NBD_INFO_EXPORT)!;
  t.is(Number(ex.readBigUInt64BE(0)), 2 * MiB);
  const flags = ex.readUInt16BE(8);
  const want =
    P.NBD_FLAG_HAS_FLAGS |
    P.NBD_FLAG_SEND_FLUSH |
    P.NBD_FLAG_SEND_FUA |
    P.NBD_FLAG_SEND_TRIM |
    P.NBD_FLAG_SEND_WRITE_ZEROES |
    P.NBD_FLAG_CAN_MULTI_CONN;
  t.is(flags, want);
  t.is(infos.get(P.NBD_INFO_NAME)!.toString(), 'disk0');
  t.is(infos.get(P.NBD_INFO_DESCRIPTION)!.toString(), 'd0');
  const bs = infos.get(P.NBD_INFO_BLOCK_SIZE)!;
  t.deepEqual([bs.readUInt32BE(0), bs.readUInt32BE(4), bs.readUInt32BE(8)], [512, 4096, 32 * MiB]);

  // GO after all that: transmission works
  c.option(P.NBD_OPT_GO, goData('disk0', []));
  for (;;) {
    const r = await c.optReply();
    if (r.type === P.NBD_REP_ACK) break;
    t.is(r.type, P.NBD_REP_INFO);
  }
  t.is(await c.writeAt(1, 4096, Buffer.alloc(4096, 9)), 0);
  const rd = await c.readAt(2, 4096, 4096);
  t.is(rd.error, 0);
  t.true(rd.data.equals(Buffer.alloc(4096, 9)));
  c.disconnect();
  await c.closedByServer();
});

test('handshake: EXPORT_NAME sends 124 zero bytes unless NO_ZEROES; unknown name closes; ABORT is acknowledged', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const { sock, server } = await startServer(t, [disk]);

  for (const flags of [
    P.NBD_FLAG_C_FIXED_NEWSTYLE,
    P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES,
    0,
  ]) {
    const c = await RawClient.handshake(sock, flags);
    c.option(P.NBD_OPT_EXPORT_NAME, Buffer.from('disk0'));
    const h = await c.read(10);
    t.is(Number(h.readBigUInt64BE(0)), 1 * MiB);
    t.is(h.readUInt16BE(8) & P.NBD_FLAG_HAS_FLAGS, P.NBD_FLAG_HAS_FLAGS);
    if ((flags & P.NBD_FLAG_C_NO_ZEROES) === 0) t.true((await c.read(124)).equals(Buffer.alloc(124)));
    // the next bytes are a reply to our read: the handshake reply had exactly the expected length
    const r = await c.readAt(7, 0, 512);
    t.is(r.error, 0);
    c.disconnect();
    await c.closedByServer();
  }

  const bad = await RawClient.handshake(sock);
  bad.option(P.NBD_OPT_EXPORT_NAME, Buffer.from('nope'));
  await bad.closedByServer();

  const ab = await RawClient.handshake(sock);
  ab.option(P.NBD_OPT_ABORT);
  const ack = await ab.optReply();
  t.is(ack.type, P.NBD_REP_ACK);
  await ab.closedByServer();

  await waitUntil(() => server.connections().length === 0, 'every connection closed');
  t.pass();
});

// ---------------------------------------------------------------------------------------------------------------
// Abuse in the transmission phase.

test('bad requests get EINVAL/ENOSPC/EPERM replies and the connection keeps working', async (t) => {
  t.timeout(30_000);
  const size = 1 * MiB;
  const disk = await fileExport('disk0', size);
  const ro = await fileExport('ro0', size, { readOnly: true });
  const { sock, server, logs } = await startServer(t, [disk, ro]);
  const { c } = await RawClient.go(sock, 'disk0');

  t.is((await c.readAt(1, size - 512, 1024)).error, EINVAL, 'read past the end');
  t.is((await c.readAt(2, 2n ** 63n, 512)).error, EINVAL, 'read at a huge offset');
  t.is((await c.readAt(3, 100, 512)).error, EINVAL, 'unaligned offset');
  t.is((await c.readAt(4, 0, 1000)).error, EINVAL, 'unaligned length');
  t.is((await c.readAt(5, 0, 32 * MiB + 512)).error, EINVAL, 'read longer than the maximum block size');
  t.is(await c.simple(P.NBD_CMD_TRIM, 6, size, 512), EINVAL, 'trim past the end');
  t.is(await c.simple(P.NBD_CMD_WRITE_ZEROES, 7, size - 512, 4096), ENOSPC, 'write zeroes past the end');
  t.is(await c.simple(P.NBD_CMD_CACHE, 8, 0, 512), EINVAL, 'NBD_CMD_CACHE is not offered');
  t.is(await c.simple(P.NBD_CMD_BLOCK_STATUS, 9, 0, 512), EINVAL, 'NBD_CMD_BLOCK_STATUS is not offered');
  t.is(await c.simple(0x99, 10, 0, 0), EINVAL, 'unknown command');
  t.is(await c.simple(P.NBD_CMD_READ, 11, 0, 512, 1 << 9), EINVAL, 'unknown command flag');
  t.is(
    await c.simple(P.NBD_CMD_TRIM, 12, 0, 512, P.NBD_CMD_FLAG_NO_HOLE),
    EINVAL,
    'NO_HOLE is only for zeroes',
  );
  t.is(await c.simple(P.NBD_CMD_READ, 13, 0, 512, P.NBD_CMD_FLAG_DF), EINVAL, 'DF was not advertised');
  t.is(
    await c.simple(P.NBD_CMD_WRITE_ZEROES, 14, 0, 4096, P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_FUA),
    0,
    'NO_HOLE accepted on write zeroes',
  );
  t.is(await c.simple(P.NBD_CMD_FLUSH, 15, 0, 0, P.NBD_CMD_FLAG_FUA), 0, 'FUA tolerated on flush');
  const zero = await c.readAt(16, 0, 0);
  t.deepEqual([zero.error, zero.data.length], [0, 0], 'zero-length read answered without data');

  // still fine
  t.is(await c.writeAt(20, 8192, Buffer.alloc(4096, 0x42)), 0);
  t.true((await c.readAt(21, 8192, 4096)).data.equals(Buffer.alloc(4096, 0x42)));
  t.false(
    disk.calls().some((call) => call.length === 0 && call.op !== 'flush'),
    'backend never saw a zero length',
  );
  t.true(allAligned(disk.calls()));
  c.disconnect();
  await c.closedByServer();

  // read-only export
  const r = await RawClient.go(sock, 'ro0');
  t.is(r.flags & P.NBD_FLAG_READ_ONLY, P.NBD_FLAG_READ_ONLY);
  t.is(await r.c.writeAt(1, 0, Buffer.alloc(512, 1)), EPERM);
  t.is(await r.c.simple(P.NBD_CMD_TRIM, 2, 0, 512), EPERM);
  t.is(await r.c.simple(P.NBD_CMD_WRITE_ZEROES, 3, 0, 512), EPERM);
  t.is((await r.c.readAt(4, 0, 512)).error, 0);
  t.is(ro.calls().filter((call) => call.op !== 'read').length, 0);
  r.c.disconnect();
  await r.c.closedByServer();

  // the C++ side reports a connection's rejected requests when it closes
  await waitUntil(() => server.connections().length === 0, 'every connection closed');
  t.true(logs.some((l) => l.event === 'request-rejected' && l.error === 'EINVAL'));
});

test('a write past the end gets ENOSPC and its payload is skipped, keeping the stream in sync', async (t) => {
  t.timeout(30_000);
  const size = 1 * MiB;
  const disk = await fileExport('disk0', size);
  const { sock } = await startServer(t, [disk]);
  const { c } = await RawClient.go(sock, 'disk0');
  // the payload looks like request headers: if the server parsed it, it would see more requests
  const fake = Buffer.alloc(64 * KiB);
  for (let o = 0; o + 28 <= fake.length; o += 28) {
    fake.writeUInt32BE(P.NBD_REQUEST_MAGIC, o);
    fake.writeUInt16BE(P.NBD_CMD_WRITE, o + 6);
    fake.writeUInt32BE(0, o + 24);
  }
  t.is(await c.writeAt(1, size - 4096, fake), ENOSPC);
  t.is(await c.writeAt(2, 1, Buffer.alloc(512, 3)), EINVAL, 'unaligned write, payload skipped too');
  t.is(await c.writeAt(3, 0, Buffer.alloc(4096, 0x77)), 0);
  t.true((await c.readAt(4, 0, 4096)).data.equals(Buffer.alloc(4096, 0x77)));
  t.deepEqual(
    disk
      .calls()
      .filter((x) => x.op === 'write')
      .map((x) => x.offset),
    [0],
  );
  c.disconnect();
  await c.closedByServer();
});

test('a write longer than the maximum payload closes the connection; the server goes on serving', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 64 * MiB);
  const { sock, server, logs } = await startServer(t, [disk]);
  const { c } = await RawClient.go(sock, 'disk0');
  c.request(P.NBD_CMD_WRITE, 1, 0, 32 * MiB + 512); // header only: the server must not wait for 32 MiB
  await c.closedByServer();
  await waitUntil(() => server.connections().length === 0, 'every connection closed');
  t.true(logs.some((l) => l.event === 'protocol-error' && /maximum/.test(String(l.msg))));

  const next = await RawClient.go(sock, 'disk0');
  t.is(await next.c.writeAt(1, 0, Buffer.alloc(32 * MiB, 1)), 0, 'a write of exactly the maximum is fine');
  next.c.disconnect();
  await next.c.closedByServer();
});

test('garbage closes the connection without hurting the server', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const { sock, server, logs } = await startServer(t, [disk]);

  // bad request magic in transmission
  const { c } = await RawClient.go(sock, 'disk0');
  c.write(crypto.randomBytes(P.REQUEST_HEADER_SIZE).fill(0xff, 0, 4));
  await c.closedByServer();

  // bad option magic in the handshake
  const h = await RawClient.handshake(sock);
  h.write(Buffer.alloc(16, 0x41));
  await h.closedByServer();

  // unknown client flags
  const f = await RawClient.handshake(sock, 0x80);
  await f.closedByServer();

  // random bytes from the start, and a client that vanishes mid-request
  const g = await RawClient.connect(sock);
  g.write(crypto.randomBytes(4096));
  await g.closedByServer();
  const v = await RawClient.go(sock, 'disk0');
  v.c.request(P.NBD_CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(100));
  v.c.destroy();

  t.true(logs.filter((l) => l.event === 'protocol-error').length >= 3);
  await waitUntil(() => server.connections().length === 0, 'every connection closed');

  // still serving
  const ok = await RawClient.go(sock, 'disk0');
  t.is(await ok.c.writeAt(1, 0, Buffer.alloc(512, 5)), 0);
  ok.c.disconnect();
  await ok.c.closedByServer();
});

test('options too large are refused (ERR_TOO_BIG) and a stalled handshake times out', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  // The deadline runs from connect: 2 s leaves the option round trips room on a loaded machine.
  const { sock } = await startServer(t, [disk], { handshakeTimeoutMs: 2000, maxOptionLength: 1024 });
  const c = await RawClient.handshake(sock);
  c.option(P.NBD_OPT_INFO, Buffer.alloc(5000));
  t.is((await c.optReply()).type, P.NBD_REP_ERR_TOO_BIG);
  c.option(P.NBD_OPT_LIST);
  t.is((await c.optReply()).type, P.NBD_REP_SERVER);
  t.is((await c.optReply()).type, P.NBD_REP_ACK);
  const t0 = Date.now();
  await c.closedByServer(5000); // no GO in time
  t.true(Date.now() - t0 < 5000);
});

// ---------------------------------------------------------------------------------------------------------------
// Backend errors, pipelining, concurrency, memory bound.

test('backend errors become NBD errors (injected faults choose, a failing file is EIO with its cause logged)', async (t) => {
  t.timeout(30_000);
  const bad = await fileExport('bad', 1 * MiB, {
    faults: [
      { op: 'read', offset: 0, length: 512, error: 'EINVAL' },
      { op: 'read', offset: 1024, length: 512, error: 'EIO' },
      { op: 'write', error: 'ENOSPC' },
      { op: 'flush', error: 'ENOSPC' },
      { op: 'trim', error: 'EIO' },
    ],
  });
  // the file shrinks under the export: a real read at 512 finds its end
  fs.truncateSync(bad.path, 512);
  const { sock, server, logs } = await startServer(t, [bad]);
  const { c } = await RawClient.go(sock, 'bad');
  t.is((await c.readAt(1, 0, 512)).error, EINVAL);
  t.is((await c.readAt(2, 512, 512)).error, EIO, 'short read from the backend');
  t.is((await c.readAt(3, 1024, 512)).error, EIO);
  t.is(await c.writeAt(4, 0, Buffer.alloc(512)), ENOSPC);
  t.is(await c.simple(P.NBD_CMD_FLUSH, 5, 0, 0), ENOSPC, 'a failed flush keeps its error');
  t.is(await c.simple(P.NBD_CMD_TRIM, 6, 0, 512), EIO);
  t.is(await c.simple(P.NBD_CMD_WRITE_ZEROES, 7, 0, 512), 0);
  c.disconnect();
  await c.closedByServer();
  await waitUntil(() => server.connections().length === 0, 'every connection closed');
  t.true(logs.some((l) => l.event === 'backend-error' && l.error === 'EIO'));
  t.true(
    logs.some(
      (l) => l.event === 'backend-error' && l.offset === 512 && typeof l.cause === 'string' && l.cause !== '',
    ),
    'the exception of the failed read is reported, not swallowed',
  );
  t.true(logs.some((l) => l.event === 'connection-close' && l.backendErrors === 6));
});

test('pipelined requests: replies leave in completion order, matched by handle', async (t) => {
  t.timeout(30_000);
  // the first read is held back
  const exp = await fileExport('disk0', 1 * MiB, {
    faults: [{ op: 'read', offset: 0, length: 512, delayMs: 1500 }],
  });
  const { sock } = await startServer(t, [exp]);
  const { c } = await RawClient.go(sock, 'disk0');
  const lengths = new Map<number, number>([
    [100, 4096],
    [102, 8192],
  ]);
  c.request(P.NBD_CMD_READ, 100, 0, 4096);
  c.request(P.NBD_CMD_WRITE, 101, 65536, 4096, 0, Buffer.alloc(4096, 0xaa));
  c.request(P.NBD_CMD_READ, 102, 131072, 8192);
  c.request(P.NBD_CMD_FLUSH, 103, 0, 0);
  const order: number[] = [];
  for (let i = 0; i < 3; i++) order.push((await c.reply((h) => lengths.get(h) ?? 0)).handle);
  t.deepEqual(order.sort(), [101, 102, 103], 'the held read does not block the others');
  const last = await c.reply((h) => lengths.get(h) ?? 0);
  t.is(last.handle, 100);
  t.is(last.data.length, 4096);
  c.disconnect();
  await c.closedByServer();
});

test('several connections to one export write and read concurrently', async (t) => {
  t.timeout(60_000);
  const disk = await fileExport('disk0', 8 * MiB);
  const { sock, server } = await startServer(t, [disk]);
  const n = 8;
  const region = 1 * MiB;
  const clients = await Promise.all(Array.from({ length: n }, () => RawClient.go(sock, 'disk0')));
  t.is(server.connections().filter((x) => x.phase === 'transmission').length, n);
  const pattern = (i: number) => {
    const b = Buffer.alloc(region);
    for (let o = 0; o < region; o += 4) b.writeUInt32BE((i << 24) | (o >>> 2), o);
    return b;
  };
  // each client pipelines its region as 16 writes of 64 KiB, then a flush
  await Promise.all(
    clients.map(async ({ c }, i) => {
      const data = pattern(i);
      for (let k = 0; k < 16; k++) {
        c.request(
          P.NBD_CMD_WRITE,
          k,
          i * region + k * 65536,
          65536,
          0,
          data.subarray(k * 65536, (k + 1) * 65536),
        );
      }
      const seen = new Set<number>();
      for (let k = 0; k < 16; k++) {
        const r = await c.reply();
        t.is(r.error, 0);
        seen.add(r.handle);
      }
      t.is(seen.size, 16);
      t.is(await c.simple(P.NBD_CMD_FLUSH, 99, 0, 0), 0);
    }),
  );
  // each client reads its neighbour's region
  await Promise.all(
    clients.map(async ({ c }, i) => {
      const j = (i + 1) % n;
      const r = await c.readAt(1000, j * region, region);
      t.is(r.error, 0);
      t.true(r.data.equals(pattern(j)));
      c.disconnect();
      await c.closedByServer();
    }),
  );
  for (let i = 0; i < n; i++)
    t.true(
      contents(disk)
        .subarray(i * region, (i + 1) * region)
        .equals(pattern(i)),
    );
});

test('backpressure: a client flooding writes never has more than the limit in flight', async (t) => {
  t.timeout(60_000);
  const disk = await fileExport('disk0', 32 * MiB);
  const limit = 1 * MiB;
  const { sock, server } = await startServer(t, [disk], { maxInflightBytes: limit });
  const { c } = await RawClient.go(sock, 'disk0');
  disk.hold();
  const count = 64;
  const chunk = 256 * KiB; // 16 MiB in total
  for (let i = 0; i < count; i++) {
    c.request(P.NBD_CMD_WRITE, i, i * chunk, chunk, 0, Buffer.alloc(chunk, i));
  }
  await waitUntil(() => disk.stats().pending > 0, 'a request held by the export');
  await new Promise((r) => setTimeout(r, 300)); // let the server read whatever it is willing to
  const info = server.connections()[0];
  t.true(disk.stats().pendingBytes <= limit + chunk, `pending ${disk.stats().pendingBytes} bytes`);
  t.true(info.inflightBytes <= limit + chunk);
  disk.release();
  const handles = new Set<number>();
  for (let i = 0; i < count; i++) {
    const r = await c.reply();
    t.is(r.error, 0);
    handles.add(r.handle);
  }
  t.is(handles.size, count);
  t.true(
    disk.stats().maxPendingBytes <= limit + chunk,
    `at most ${disk.stats().maxPendingBytes} bytes were in flight`,
  );
  const data = contents(disk);
  for (let i = 0; i < count; i++) t.is(data[i * chunk + chunk - 1], i & 0xff);
  c.disconnect();
  await c.closedByServer();
});

test('FLUSH reaches the backend after the writes already answered; FUA is passed through', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const { sock } = await startServer(t, [disk]);
  const { c } = await RawClient.go(sock, 'disk0');
  t.is(await c.writeAt(1, 0, Buffer.alloc(4096, 1)), 0);
  t.is(await c.writeAt(2, 4096, Buffer.alloc(4096, 2), P.NBD_CMD_FLAG_FUA), 0);
  t.is(await c.simple(P.NBD_CMD_TRIM, 3, 8192, 4096, P.NBD_CMD_FLAG_FUA), 0);
  t.is(await c.simple(P.NBD_CMD_FLUSH, 4, 0, 0), 0);
  t.deepEqual(
    disk.calls().map((x) => [x.op, x.fua]),
    [
      ['write', false],
      ['write', true],
      ['trim', true],
      ['flush', false],
    ],
  );
  c.disconnect();
  await c.closedByServer();
});

// ---------------------------------------------------------------------------------------------------------------
// Ending connections and the server.

test('NBD_CMD_DISC: requests in flight are answered before the connection closes', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const { sock } = await startServer(t, [disk]);
  const { c } = await RawClient.go(sock, 'disk0');
  disk.hold();
  c.request(P.NBD_CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 0x3c));
  c.disconnect();
  await waitUntil(() => disk.stats().pending === 1, 'one request held by the export');
  await new Promise((r) => setTimeout(r, 100));
  t.false(c.isClosed, 'not closed while the write is in flight');
  disk.release();
  const r = await c.reply();
  t.deepEqual([r.handle, r.error], [1, 0]);
  await c.closedByServer();
  t.true(contents(disk).subarray(0, 4096).equals(Buffer.alloc(4096, 0x3c)));
});

test('close() lets in-flight requests finish, refuses new clients, then ends connections', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const { sock, server, logs } = await startServer(t, [disk]);
  const { c } = await RawClient.go(sock, 'disk0');
  const idle = await RawClient.handshake(sock); // still negotiating
  disk.hold();
  c.request(P.NBD_CMD_READ, 1, 0, 4096);
  await waitUntil(() => disk.stats().pending === 1, 'one request held by the export');

  let closed = false;
  const closing = server.close().then(() => (closed = true));
  await idle.closedByServer();
  await t.throwsAsync(RawClient.connect(sock), undefined, 'no new connections');
  await new Promise((r) => setTimeout(r, 100));
  t.false(closed, 'close() waits for the read in flight');
  t.false(c.isClosed);
  disk.release();
  const r = await c.reply(() => 4096);
  t.deepEqual([r.handle, r.error, r.data.length], [1, 0, 4096]);
  await c.closedByServer();
  await closing;
  t.true(closed);
  t.false(fs.existsSync(sock), 'socket file removed');
  t.true(logs.some((l) => l.event === 'closed'));
});

test('destroy() cuts connections at once; late backend completions are harmless', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const { sock, server } = await startServer(t, [disk]);
  const { c } = await RawClient.go(sock, 'disk0');
  disk.hold();
  c.request(P.NBD_CMD_READ, 1, 0, 4096);
  c.request(P.NBD_CMD_WRITE, 2, 0, 4096, 0, Buffer.alloc(4096));
  await waitUntil(() => disk.stats().pending === 2, 'two requests held by the export');
  await server.destroy();
  await c.closedByServer();
  disk.release(); // completions arrive after the socket is gone
  await waitUntil(() => disk.stats().pending === 0, 'no request pending on the export');
  await new Promise((r) => setTimeout(r, 50));
  t.is(server.connections().length, 0);
});

test('disconnectExport() ends only the connections of that export', async (t) => {
  t.timeout(30_000);
  const a = await fileExport('a', 1 * MiB);
  const b = await fileExport('b', 1 * MiB);
  const { sock, server } = await startServer(t, [a, b]);
  const ca = await RawClient.go(sock, 'a');
  const cb = await RawClient.go(sock, 'b');
  await server.disconnectExport('a');
  await ca.c.closedByServer();
  t.is((await cb.c.readAt(1, 0, 512)).error, 0);
  t.deepEqual(
    server.connections().map((x) => x.export),
    ['b'],
  );
  cb.c.disconnect();
  await cb.c.closedByServer();
});

test('unix socket: mode applied, stale socket file taken over, live one left alone', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const sock = area.name('nbd.sock');
  const registry = new MapExportRegistry([disk]);
  const s1 = new NbdServer({ registry, listen: { path: sock, mode: 0o600 }, logger: () => {} });
  await s1.listen();
  t.teardown(() => s1.destroy());
  t.is(fs.statSync(sock).mode & 0o777, 0o600);
  const s2 = new NbdServer({ registry, listen: { path: sock }, logger: () => {} });
  await t.throwsAsync(s2.listen(), { code: 'EADDRINUSE' });
  await s1.close();

  // a socket file left behind by a killed process
  const stale = area.name('stale.sock');
  const child = await runClient(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  t.not(child.code, 0);
  t.true(fs.existsSync(stale));
  const logs: NbdLogRecord[] = [];
  const s3 = new NbdServer({ registry, listen: { path: stale }, logger: (r) => logs.push(r) });
  await s3.listen();
  t.teardown(() => s3.destroy());
  t.true(logs.some((l) => l.event === 'stale-socket-removed'));
  const r = await runClient('nbdinfo', ['--size', s3.uri('disk0')]);
  t.is(r.stdout.trim(), String(1 * MiB));
  await s3.close();
});

test('the default logger writes one JSON object per line', async (t) => {
  t.timeout(30_000);
  const disk = await fileExport('disk0', 1 * MiB);
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  const { sock } = await startServer(t, [disk], { logger: jsonLinesLogger(out) });
  const c = await RawClient.handshake(sock);
  c.write(Buffer.alloc(16, 0x42));
  await c.closedByServer();
  await waitUntil(() => text.includes('connection-close'), 'the connection-close log line');
  const records = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as NbdLogRecord);
  const events = records.map((r) => r.event);
  t.true(events.includes('listening'));
  t.true(events.includes('connection-open'));
  t.true(events.includes('protocol-error'));
  t.true(events.includes('connection-close'));
  t.true(
    records.every((r) => typeof r.time === 'string' && r.component === 'nbd' && typeof r.level === 'string'),
  );
});

/** Random requests and garbage from 60 clients, one after the other; every fifth never finishes its handshake. */
async function fuzz(sock: string, exportName: string): Promise<void> {
  let x = 0x2545f491; // xorshift32, fixed seed: a failure replays
  const rnd = (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
  for (let round = 0; round < 60; round++) {
    const c = round % 5 === 0 ? await RawClient.handshake(sock) : (await RawClient.go(sock, exportName)).c;
    const parts: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const h = Buffer.alloc(P.REQUEST_HEADER_SIZE);
      const plausible = rnd(4) !== 0;
      const type = plausible ? [0, 1, 3, 4, 6][rnd(5)] : rnd(10);
      const length = plausible ? rnd(64) * 512 : rnd(3) === 0 ? rnd(0xffffffff) : rnd(256) * 512;
      h.writeUInt32BE(rnd(100) === 0 ? rnd(0xffffffff) : P.NBD_REQUEST_MAGIC, 0);
      h.writeUInt16BE(plausible ? rnd(2) : rnd(0x10000), 4);
      h.writeUInt16BE(type, 6);
      h.writeUInt32BE(rnd(0xffffffff), 8);
      h.writeUInt32BE(plausible ? 0 : rnd(0xffffffff), 16);
      h.writeUInt32BE(plausible ? rnd(8400) * 512 : rnd(0xffffffff), 20); // sometimes past the 4 MiB end
      h.writeUInt32BE(length, 24);
      parts.push(h);
      if (type === P.NBD_CMD_WRITE && plausible) parts.push(crypto.randomBytes(length));
      if (rnd(10) === 0) parts.push(crypto.randomBytes(rnd(70_000))); // garbage
    }
    c.write(Buffer.concat(parts));
    await new Promise((r) => setTimeout(r, rnd(20)));
    c.destroy();
  }
}

test('fuzz: random requests and garbage from many clients never take the server down', async (t) => {
  t.timeout(60_000);
  const disk = await fileExport('disk0', 4 * MiB);
  const { sock, server, logs } = await startServer(t, [disk], { handshakeTimeoutMs: 2000 });
  await fuzz(sock, 'disk0');
  await waitUntil(() => server.connections().length === 0, 'every connection closed', 20_000);
  t.false(logs.some((l) => l.event === 'internal-error'));
  const events: Record<string, number> = {};
  for (const l of logs) events[l.event] = (events[l.event] ?? 0) + 1;
  t.log(events, 'backend calls:', disk.stats().requests);
  t.true(
    disk.stats().requests > 0 && (events['request-rejected'] ?? 0) > 0 && (events['protocol-error'] ?? 0) > 0,
  );
  const ok = await RawClient.go(sock, 'disk0');
  t.is(await ok.c.writeAt(1, 0, Buffer.alloc(4096, 0x61)), 0);
  t.true((await ok.c.readAt(2, 0, 4096)).data.equals(Buffer.alloc(4096, 0x61)));
  ok.c.disconnect();
  await ok.c.closedByServer();
});

test('fuzz on a wdev: random requests and garbage never take the server or the wdev down', async (t) => {
  t.timeout(90_000);
  const files = await makeWdevFiles(area.dir, path.basename(area.name('fz')), {
    ldevBytes: 32 * MiB,
    ddevBytes: 4 * MiB,
  });
  const { device } = await WdevDevice.open({ name: 'fz', ...files });
  const { sock, server, logs } = await startServer(t, [device], { handshakeTimeoutMs: 2000 });
  try {
    await fuzz(sock, 'fz');
    await waitUntil(() => server.connections().length === 0, 'every connection closed', 20_000);
    t.false(logs.some((l) => l.event === 'internal-error'));
    const events: Record<string, number> = {};
    for (const l of logs) events[l.event] = (events[l.event] ?? 0) + 1;
    t.log(events);
    t.true((events['request-rejected'] ?? 0) > 0 && (events['protocol-error'] ?? 0) > 0);
    const status = await device.status();
    t.false(status.failed, status.failure);
    t.true(status.lsids.latest > 0, 'the fuzz reached the log');
    const ok = await RawClient.go(sock, 'fz');
    t.is(await ok.c.writeAt(1, 0, Buffer.alloc(4096, 0x61)), 0);
    t.true((await ok.c.readAt(2, 0, 4096)).data.equals(Buffer.alloc(4096, 0x61)));
    ok.c.disconnect();
    await ok.c.closedByServer();
  } finally {
    await server.close();
    await device.close();
  }
});

test('backpressure on a wdev: while it is frozen a flooding client never has more than the limit in flight', async (t) => {
  t.timeout(60_000);
  const files = await makeWdevFiles(area.dir, path.basename(area.name('bp')), {
    ldevBytes: 64 * MiB,
    ddevBytes: 32 * MiB,
  });
  const { device } = await WdevDevice.open({ name: 'bp', ...files });
  const limit = 1 * MiB;
  const { sock, server } = await startServer(t, [device], { maxInflightBytes: limit });
  try {
    const { c } = await RawClient.go(sock, 'bp');
    await device.freeze(0); // writes wait in the logger's queue until melt
    const count = 64;
    const chunk = 256 * KiB; // 16 MiB in total
    for (let i = 0; i < count; i++) {
      c.request(P.NBD_CMD_WRITE, i, i * chunk, chunk, 0, Buffer.alloc(chunk, i));
    }
    await waitUntil(() => (server.connections()[0]?.inflightRequests ?? 0) > 0, 'a request in flight');
    await new Promise((r) => setTimeout(r, 300)); // let the server read whatever it is willing to
    const info = server.connections()[0];
    t.true(info.inflightBytes <= limit + chunk, `in flight ${info.inflightBytes} bytes`);
    t.true(info.inflightRequests < count);
    await device.melt();
    const handles = new Set<number>();
    for (let i = 0; i < count; i++) {
      const r = await c.reply();
      t.is(r.error, 0);
      handles.add(r.handle);
    }
    t.is(handles.size, count);
    for (const i of [0, count - 1]) {
      const r = await c.readAt(1000 + i, i * chunk, chunk);
      t.true(r.data.equals(Buffer.alloc(chunk, i)));
    }
    c.disconnect();
    await c.closedByServer();
  } finally {
    await server.close();
    await device.close();
  }
});
