// Roles by certificate (src/common/roles.ts): what a certificate's subjectAltName names, what each role may call, the
// refusal of a certificate without role unless tls.unnamedPeersAreAdmin, that the table names only methods the
// protos have, and that docs/operations.md shows the same table.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadProto } from '../../src/common/grpc';
import {
  OPEN_SERVICES,
  PEER_ROLES,
  ROLE_METHODS,
  certificateRoles,
  mayCall,
  refusal,
} from '../../src/common/roles';
import { ROOT } from '../processes';

const cert = (subjectaltname?: string) => ({ subjectaltname }) as { subjectaltname: string };

test('the roles of a certificate are its walb-role: URIs, other names ignored', (t) => {
  t.deepEqual(certificateRoles(cert('IP Address:127.0.0.1, DNS:localhost, URI:walb-role:proxy')), ['proxy']);
  t.deepEqual(certificateRoles(cert('URI:walb-role:storage, URI:walb-role:proxy')), ['storage', 'proxy']);
  t.deepEqual(certificateRoles(cert('DNS:localhost, URI:spiffe://x/proxy')), []);
  t.deepEqual(certificateRoles(cert(undefined)), []);
  t.deepEqual(certificateRoles(undefined), []);
});

test('a proxy may send wdiffs to an archive but not clear its volumes nor call the other roles', (t) => {
  t.true(mayCall(['proxy'], 'walb.v1.Archive/SendWdiff'));
  for (const m of ['walb.v1.Archive/ClearVol', 'walb.v1.Archive/FullSync', 'walb.v1.Proxy/SendWlog'])
    t.false(mayCall(['proxy'], m), m);
});

test('a storage may ship wlogs and back up, but call no admin method', (t) => {
  for (const m of ['walb.v1.Proxy/SendWlog', 'walb.v1.Archive/FullSync', 'walb.v1.Archive/HashSync'])
    t.true(mayCall(['storage'], m), m);
  for (const m of [
    'walb.v1.Archive/ClearVol',
    'walb.v1.Archive/SendWdiff',
    'walb.v1.Proxy/ArchiveInfoAdd',
    'walb.v1.Storage/InitVol',
    'walb.v1.Operations/Cancel',
  ])
    t.false(mayCall(['storage'], m), m);
});

test('an archive may call the transfers of replication on another archive, and nothing else', (t) => {
  for (const m of ['Status', 'FullSync', 'HashSync', 'SendWdiff'])
    t.true(mayCall(['archive'], `walb.v1.Archive/${m}`), m);
  for (const m of ['walb.v1.Archive/ClearVol', 'walb.v1.Archive/Restore', 'walb.v1.Proxy/SendWlog'])
    t.false(mayCall(['archive'], m), m);
});

test('admin may call everything; health and reflection are open to every role; no role is no right', (t) => {
  t.true(mayCall(['admin'], 'walb.v1.Archive/ClearVol'));
  t.true(mayCall(['admin'], 'walb.v1.Operations/Cancel'));
  for (const role of PEER_ROLES) {
    t.true(mayCall([role], 'grpc.health.v1.Health/Check'), role);
    t.true(mayCall([role], 'grpc.reflection.v1.ServerReflection/ServerReflectionInfo'), role);
  }
  t.false(mayCall([], 'walb.v1.Archive/SendWdiff'));
  t.false(mayCall([], 'grpc.health.v1.HealthX/Check'), 'a service only named like an open one');
});

test('a refusal names the role and the method; a certificate of two roles has the rights of both', (t) => {
  const proxy = cert('DNS:localhost, URI:walb-role:proxy');
  t.is(refusal(proxy, 'walb.v1.Archive/ClearVol', false), 'role proxy may not call walb.v1.Archive/ClearVol');
  t.is(refusal(proxy, 'walb.v1.Archive/SendWdiff', false), undefined);
  const both = cert('URI:walb-role:storage, URI:walb-role:proxy');
  t.is(refusal(both, 'walb.v1.Proxy/SendWlog', false), undefined);
  t.is(refusal(both, 'walb.v1.Archive/SendWdiff', false), undefined);
  t.regex(refusal(cert('URI:walb-role:root'), 'walb.v1.Archive/Status', true)!, /role root may not call/);
});

test('a certificate without role is refused, naming tls.unnamedPeersAreAdmin, unless that key makes it admin', (t) => {
  const none = cert('IP Address:127.0.0.1');
  t.regex(
    refusal(none, 'walb.v1.Archive/Status', false)!,
    /names no role .*walb\.v1\.Archive\/Status.*tls\.unnamedPeersAreAdmin/,
  );
  t.is(refusal(none, 'walb.v1.Archive/ClearVol', true), undefined);
  t.is(refusal(none, 'grpc.health.v1.Health/Check', false), undefined);
});

test('every method of the table is a method of our protos', (t) => {
  const methods = new Set<string>();
  for (const file of ['archive', 'proxy', 'storage', 'common'])
    for (const [name, service] of Object.entries(loadProto(`walb/v1/${file}.proto`).definition))
      if (!('format' in service)) for (const m of Object.keys(service)) methods.add(`${name}/${m}`);
  for (const [role, list] of Object.entries(ROLE_METHODS))
    for (const m of list) t.true(methods.has(m), `${role}: ${m}`);
});

test('docs/operations.md shows the table of src/common/roles.ts', (t) => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
  const rows = new Map<string, string[]>();
  for (const m of doc.matchAll(/^\| `walb-role:(\w+)`[^|]*\| (.*) \|$/gm))
    rows.set(
      m[1],
      [...m[2].matchAll(/`([^`]+)`/g)].map((x) => x[1]),
    );
  t.deepEqual([...rows.keys()].sort(), [...PEER_ROLES].sort());
  t.deepEqual(rows.get('admin'), [], 'admin: every method, no list');
  for (const [role, list] of Object.entries(ROLE_METHODS)) t.deepEqual(rows.get(role), [...list], role);
  for (const s of OPEN_SERVICES) t.true(doc.includes(`\`${s}\``), s);
});
