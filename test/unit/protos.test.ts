// The wire contract in proto/walb/v1 loads at run time with the loader options the servers use, and those options
// are the ones the generated types were built with. (Method names, requests, replies and streaming shapes are
// checked by the compiler: every handler and client is typed by the generated service types.)
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS, PROTO_DIR } from '../../src/common/grpc';

const SERVICES: Record<string, string[]> = {
  'walb/v1/wdev.proto': ['walb.v1.WdevControl'],
  'walb/v1/common.proto': ['walb.v1.Operations'],
  'walb/v1/archive.proto': ['walb.v1.Archive'],
  'walb/v1/proxy.proto': ['walb.v1.Proxy'],
  'walb/v1/storage.proto': ['walb.v1.Storage'],
  'walb/v1/bulk.proto': ['walb.v1.ArchiveBulk'],
};

test('every proto file loads with the servers loader options and defines its services', (t) => {
  for (const [file, services] of Object.entries(SERVICES)) {
    const def = protoLoader.loadSync(file, LOADER_OPTIONS);
    for (const s of services) t.truthy(def[s] && !('format' in def[s]), `${s} in ${file}`);
  }
  t.deepEqual(
    fs
      .readdirSync(path.join(PROTO_DIR, 'walb', 'v1'))
      .map((f) => `walb/v1/${f}`)
      .sort(),
    Object.keys(SERVICES).sort(),
    'every proto file is listed here',
  );
});

test('the loader options are the flags the generated types were built with (npm run build:proto)', (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(PROTO_DIR, '..', 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const flags = pkg.scripts['build:proto'];
  t.is(LOADER_OPTIONS.longs, Number);
  t.regex(flags, /--longs=Number\b/);
  t.is(LOADER_OPTIONS.enums, String);
  t.regex(flags, /--enums=String\b/);
  t.is(LOADER_OPTIONS.defaults, true);
  t.regex(flags, /--defaults\b/);
  t.is(LOADER_OPTIONS.oneofs, true);
  t.regex(flags, /--oneofs\b/);
  t.is(LOADER_OPTIONS.keepCase, false);
  t.notRegex(flags, /--keepCase\b/);
  for (const file of Object.keys(SERVICES)) t.true(flags.includes(file), `build:proto generates ${file}`);
});
