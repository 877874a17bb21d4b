// The common logger (docs/operations.md, "Logs"): levels, the journald priority prefix, WALB_LOG_LEVEL over the
// config file, and every event name the code logs listed in docs/operations.md with its level.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger, type LogLevel } from '../../src/common/log';
import { loadProxyConfig } from '../../src/config/proxy';
import { ROOT } from '../processes';
import { makeTempDir, removeDir } from '../temp-files';

function capture(opts: { level?: LogLevel; journald?: boolean }) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  const logger = createLogger('test', { stream, ...opts });
  return { logger, lines: () => text.split('\n').filter((l) => l) };
}

test('events below the level are left out; setLevel changes it', (t) => {
  const { logger, lines } = capture({ level: 'warn' });
  logger.log('debug', 'a');
  logger.log('info', 'b');
  logger.log('warn', 'c', { volume: 'vol0' });
  logger.log('error', 'd');
  logger.setLevel('debug');
  logger.log('debug', 'e');
  const events = lines().map((l) => JSON.parse(l) as { event: string; level: string; component: string });
  t.deepEqual(
    events.map((e) => e.event),
    ['c', 'd', 'e'],
  );
  t.like(JSON.parse(lines()[0]), { level: 'warn', component: 'test', event: 'c', volume: 'vol0' });
});

test('under journald each line starts with its priority: <3> error, <4> warn, <6> info, <7> debug', (t) => {
  const { logger, lines } = capture({ level: 'debug', journald: true });
  for (const level of ['error', 'warn', 'info', 'debug'] as const) logger.log(level, 'x');
  t.deepEqual(
    lines().map((l) => l.slice(0, 3)),
    ['<3>', '<4>', '<6>', '<7>'],
  );
  t.like(JSON.parse(lines()[0].slice(3)), { level: 'error', event: 'x' });
  const plain = capture({ journald: false });
  plain.logger.log('info', 'x');
  t.is(plain.lines()[0][0], '{', 'no prefix outside journald');
});

test('logLevel comes from the config file, WALB_LOG_LEVEL wins over it, and a bad level is a CONFIG error', (t) => {
  const dir = makeTempDir('log-level');
  const saved = process.env.WALB_LOG_LEVEL;
  try {
    const file = path.join(dir, 'proxy.json');
    fs.writeFileSync(file, JSON.stringify({ logLevel: 'warn' }));
    delete process.env.WALB_LOG_LEVEL;
    t.is(loadProxyConfig({}).logLevel, 'info', 'default');
    t.is(loadProxyConfig({ config: file }).logLevel, 'warn');
    process.env.WALB_LOG_LEVEL = 'debug';
    t.is(loadProxyConfig({ config: file }).logLevel, 'debug');
    process.env.WALB_LOG_LEVEL = 'loud';
    t.throws(() => loadProxyConfig({ config: file }), { code: 'CONFIG', message: /logLevel/ });
  } finally {
    if (saved === undefined) delete process.env.WALB_LOG_LEVEL;
    else process.env.WALB_LOG_LEVEL = saved;
    removeDir(dir);
  }
});

/** Every `log('LEVEL', 'EVENT'` call in src/ (the NBD server's events reach the logs as nbd-EVENT). */
function loggedEvents(): Map<string, Set<string>> {
  const found = new Map<string, Set<string>>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'generated') walk(p);
        continue;
      }
      if (!e.name.endsWith('.ts')) continue;
      const prefix = p.includes(`${path.sep}nbd${path.sep}`) ? 'nbd-' : '';
      const re = /\blog\(\s*'(debug|info|warn|error)',\s*'([a-z0-9-]+)'/g;
      for (const m of fs.readFileSync(p, 'utf8').matchAll(re)) {
        const name = prefix + m[2];
        if (!found.has(name)) found.set(name, new Set());
        found.get(name)!.add(m[1]);
      }
    }
  };
  walk(path.join(ROOT, 'src'));
  return found;
}

/** The table of docs/operations.md's "Log events": `| \`event\` | level(s) | meaning |`. */
function documentedEvents(): Map<string, Set<string>> {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
  const section = doc.slice(doc.indexOf('### Log events'));
  const listed = new Map<string, Set<string>>();
  for (const m of section.matchAll(/^\| `([a-z0-9-]+)` \| ([a-z, ]+) \| .+\|$/gm))
    listed.set(m[1], new Set(m[2].split(',').map((s) => s.trim())));
  return listed;
}

test('every event the code logs is listed in docs/operations.md with its level, and nothing else is', (t) => {
  const logged = loggedEvents();
  const listed = documentedEvents();
  t.true(logged.size > 30, `found ${logged.size} events in src/`);
  for (const [event, levels] of logged)
    t.deepEqual([...(listed.get(event) ?? [])].sort(), [...levels].sort(), `event ${event}`);
  t.deepEqual(
    [...listed.keys()].filter((e) => !logged.has(e)),
    [],
    'documented events that nothing logs',
  );
});
