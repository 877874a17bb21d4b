// The README and docs/operations.md name servers by the ids of config/layout.example.json, so that their walbc
// commands work as written with that layout (and the role examples carry the same ids).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadLayout } from '../../src/controller/controller';
import { ROOT } from '../processes';

const layout = loadLayout(path.join(ROOT, 'config', 'layout.example.json'));
const ids = new Set([...layout.storages, ...layout.proxies, ...layout.archives].map((s) => s.id));

test('every server id in a walbc command of the README and docs/operations.md is in the example layout', (t) => {
  let checked = 0;
  for (const file of ['README.md', path.join('docs', 'operations.md')]) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/walbc [^`\n]*/g))
      for (const id of m[0].matchAll(/(?<=\s)[spa]\d+(?=\s|$)/g)) {
        checked++;
        t.true(
          ids.has(id[0]),
          `${file}: '${m[0]}' names ${id[0]}, which config/layout.example.json does not have`,
        );
      }
  }
  t.true(checked >= 5, `${checked} ids checked`);
});

test('the role examples carry the ids the example layout gives their servers', (t) => {
  const idOf = (role: string) =>
    (JSON.parse(fs.readFileSync(path.join(ROOT, 'config', `${role}.example.json`), 'utf8')) as { id: string })
      .id;
  t.is(idOf('storage'), layout.storages[0].id);
  t.is(idOf('proxy'), layout.proxies[0].id);
  t.is(idOf('archive'), layout.archives[0].id);
});
