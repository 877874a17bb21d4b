// The unit files in systemd/ are valid for systemd (systemd-analyze verify).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, run } from '../processes';

test('every unit in systemd/ passes systemd-analyze verify', async (t) => {
  const dir = path.join(ROOT, 'systemd');
  const units = fs.readdirSync(dir).filter((f) => f.endsWith('.service'));
  for (const role of ['wdevd', 'storage', 'proxy', 'archive'])
    t.true(units.includes(`walb-${role}.service`), role);
  const r = await run('systemd-analyze', ['verify', ...units.map((u) => path.join(dir, u))]);
  t.is(r.code, 0, r.stderr);
  t.notRegex(r.stderr, /error|invalid|unknown/i, r.stderr);
});
