// The role configs: each example file in config/ loads, names every key (so operators see every knob) with the
// defaults of the schema; the command line overrides the file (--archive switches the primary archive); a bad
// key or value is a CONFIG error naming it.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { errorCode, errorMessage } from '../../src/common/errors';
import { loadArchiveConfig } from '../../src/config/archive';
import { loadProxyConfig } from '../../src/config/proxy';
import { loadStorageConfig } from '../../src/config/storage';
import { ROOT } from '../processes';
import { makeTempDir, removeDir } from '../temp-files';

const example = (role: string) => path.join(ROOT, 'config', `${role}.example.json`);

test('every example file loads and lists every key of its schema', (t) => {
  const loaded: Record<string, object> = {
    storage: loadStorageConfig({ config: example('storage') }),
    proxy: loadProxyConfig({ config: example('proxy') }),
    archive: loadArchiveConfig({ config: example('archive') }),
  };
  for (const [role, config] of Object.entries(loaded)) {
    const file = JSON.parse(fs.readFileSync(example(role), 'utf8')) as Record<string, unknown>;
    t.deepEqual(Object.keys(file).sort(), Object.keys(config).sort(), role);
  }
  const s = loaded.storage as {
    proxyHeartbeatSec: number;
    fullScanBytesPerSec: number;
    maxWlogSendMb: number;
  };
  t.is(s.proxyHeartbeatSec, 10);
  t.is(s.fullScanBytesPerSec, 0);
  t.is(s.maxWlogSendMb, 128);
  t.true((loaded.proxy as { startVolumes: boolean }).startVolumes);
  t.is((loaded.archive as { fsyncIntervalMb: number }).fsyncIntervalMb, 1024);
});

test('the command line overrides the file: --archive switches the primary archive, --proxy the list', (t) => {
  const c = loadStorageConfig({ config: example('storage'), archive: '10.0.0.9:10200', proxy: 'a:1,b:2' });
  t.is(c.archive, '10.0.0.9:10200');
  t.deepEqual(c.proxies, ['a:1', 'b:2']);
});

test('a bad value or an unknown key is a CONFIG error naming the key', (t) => {
  const dir = makeTempDir('role-config');
  try {
    const bad = (role: string, patch: object) => {
      const file = path.join(dir, `${role}.json`);
      fs.writeFileSync(
        file,
        JSON.stringify({ ...JSON.parse(fs.readFileSync(example(role), 'utf8')), ...patch }),
      );
      return file;
    };
    const cases: [() => unknown, RegExp][] = [
      [() => loadStorageConfig({ config: bad('storage', { proxyHeartbeatSec: -1 }) }), /proxyHeartbeatSec/],
      [() => loadStorageConfig({ config: bad('storage', { archive: 'nope' }) }), /archive/],
      [() => loadProxyConfig({ config: bad('proxy', { startVolumes: 'maybe' }) }), /startVolumes/],
      [() => loadArchiveConfig({ config: bad('archive', { fsyncIntervalMb: 'big' }) }), /fsyncIntervalMb/],
      [() => loadArchiveConfig({ config: bad('archive', { nosuchKey: 1 }) }), /nosuchKey/],
      [() => loadArchiveConfig({ config: bad('archive', { bulkListen: 'on' }) }), /bulkListen/],
      [() => loadArchiveConfig({ config: example('archive'), bulkListen: 'host:99999' }), /bulkListen/],
    ];
    for (const [load, key] of cases) {
      const err = t.throws(load);
      t.is(errorCode(err), 'CONFIG');
      t.regex(errorMessage(err), key);
    }
  } finally {
    removeDir(dir);
  }
});
