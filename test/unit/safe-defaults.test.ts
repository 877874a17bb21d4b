// The address checks of the configs (docs/operations.md, "Safe defaults"): plaintext gRPC listeners and the archive's
// bulk port only on loopback unless plaintextAllowRemote (or a tls block), walb-wdevd's NBD over TCP only on loopback
// unless nbd.tcpAllowRemote, and the socket mode and group keys; each refusal a CONFIG error naming the key.
import test from 'ava';
import fs from 'node:fs';
import { errorCode } from '../../src/common/errors';
import { socketAccess } from '../../src/common/socket';
import { loadArchiveConfig } from '../../src/config/archive';
import { loadProxyConfig } from '../../src/config/proxy';
import { loadStorageConfig } from '../../src/config/storage';
import { loadWdevdConfig } from '../../src/config/wdevd';
import { tempArea } from '../temp-files';

const area = tempArea('safe-defaults');
test.after.always(() => area.cleanup());

function configFile(content: object): string {
  const file = area.name('config.json');
  fs.writeFileSync(file, JSON.stringify(content));
  return file;
}

function refused(t: import('ava').ExecutionContext, load: () => unknown, message: RegExp): void {
  const err = t.throws(load);
  t.is(errorCode(err), 'CONFIG');
  t.regex(err!.message, message);
}

const storage = { archive: '127.0.0.1:10200', proxy: '127.0.0.1:10100' };

test('a plaintext listen address off loopback is refused, naming plaintextAllowRemote, for every role', (t) => {
  for (const listen of ['0.0.0.0:10200', '192.0.2.2:10200', 'backup5:10200']) {
    const named = new RegExp(`^listen: ${listen} is not a loopback address .* plaintextAllowRemote`);
    refused(t, () => loadArchiveConfig({ listen }), named);
    refused(t, () => loadProxyConfig({ listen }), named);
    refused(t, () => loadStorageConfig({ listen, ...storage }), named);
  }
});

test('loopback listen addresses are plaintext without any key', (t) => {
  for (const listen of ['127.0.0.1:1', '127.5.6.7:1', 'localhost:1']) {
    t.is(loadArchiveConfig({ listen }).listen, listen);
    t.is(loadProxyConfig({ listen }).listen, listen);
    t.is(loadStorageConfig({ listen, ...storage }).listen, listen);
  }
});

test("the archive's bulk port off loopback is refused in plaintext even when listen is loopback", (t) => {
  refused(
    t,
    () => loadArchiveConfig({ listen: '127.0.0.1:10200', bulkListen: '0.0.0.0:10201' }),
    /^bulkListen: 0\.0\.0\.0:10201 is not a loopback address .* plaintextAllowRemote/,
  );
  t.is(loadArchiveConfig({ listen: '127.0.0.1:10200', bulkListen: 'off' }).bulkListen, 'off');
});

test('plaintextAllowRemote, or a tls block, allows a listen address off loopback', (t) => {
  const allow = configFile({ plaintextAllowRemote: true });
  t.is(
    loadArchiveConfig({ config: allow, listen: '0.0.0.0:1', bulkListen: '0.0.0.0:2' }).bulkListen,
    '0.0.0.0:2',
  );
  t.is(loadProxyConfig({ config: allow, listen: '192.0.2.2:1' }).listen, '192.0.2.2:1');
  const pem = area.name('x.pem');
  fs.writeFileSync(pem, '');
  const tls = configFile({ tls: { ca: pem, cert: pem, key: pem } });
  t.is(loadStorageConfig({ config: tls, listen: '0.0.0.0:1', ...storage }).listen, '0.0.0.0:1');
  t.false(loadStorageConfig({ config: tls, ...storage }).tls.unnamedPeersAreAdmin);
  refused(
    t,
    () => loadArchiveConfig({ config: configFile({ plaintextAllowRemote: 'yes' }) }),
    /must be true or false/,
  );
});

test('NBD over TCP off loopback is refused, naming nbd.tcpAllowRemote, unless that key is set', (t) => {
  const dirs = { runDir: area.name('run'), stateDir: area.name('state') };
  refused(
    t,
    () => loadWdevdConfig({ ...dirs, nbdTcp: '0.0.0.0:10809' }),
    /^nbd\.tcp: 0\.0\.0\.0:10809 is not a loopback address;.* nbd\.tcpAllowRemote/,
  );
  t.is(loadWdevdConfig({ ...dirs, nbdTcp: '127.0.0.1:10809' }).nbd.tcp, '127.0.0.1:10809');
  const allow = configFile({ nbd: { tcpAllowRemote: true } });
  t.is(loadWdevdConfig({ ...dirs, config: allow, nbdTcp: '0.0.0.0:10809' }).nbd.tcp, '0.0.0.0:10809');
});

test('socket files default to mode 0660 and the process group; a bad mode or an unknown group is CONFIG', (t) => {
  const dirs = { runDir: area.name('run'), stateDir: area.name('state') };
  const c = loadWdevdConfig(dirs);
  t.deepEqual(c.sockets, { mode: '0660', group: '' });
  t.deepEqual(socketAccess(c.sockets), { mode: 0o660 });
  t.deepEqual(socketAccess({ mode: '0600', group: '4' }), { mode: 0o600, gid: 4 });
  t.deepEqual(socketAccess({ mode: '660', group: 'root' }), { mode: 0o660, gid: 0 });
  refused(
    t,
    () => socketAccess({ mode: '0660', group: 'no-such-group-here' }),
    /^sockets\.group: no group named/,
  );
  refused(
    t,
    () => loadWdevdConfig({ ...dirs, config: configFile({ sockets: { mode: 'rw-rw----' } }) }),
    /sockets\.mode: must be an octal mode/,
  );
});
