// Every citation in the repository points into docs/, at a section that exists there. Code cites a page as
// `docs/NAME.md §N` (a list may follow: `docs/formats.md §2.7, §8c`); inside docs/ a bare `§N` is the page's own
// section and `NAME.md §N` another page's. Sections are the numbered headings of a page (`### 7.1 ...`) and the
// lettered items of a numbered section (`c.` under `## 8.` is §8c). The specification outside the repository is
// never cited.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';

// The repository root, from dist/test/unit (without test/helpers, which loads the addon).
const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCANNED = ['src', 'native', 'test', 'bench', 'scripts', 'proto', 'docs', 'README.md'];
// Generated from proto/ (checked there); this file holds bad citations on purpose.
const SKIPPED = ['src/generated', 'test/unit/doc-refs.test.ts'];
const TEXT_FILE = /\.(ts|js|mjs|cpp|hpp|h|cc|proto|sh|md)$/;

/** Section ids of a page: numbered headings and the lettered items of a numbered section. */
function sectionsOf(markdown: string): Set<string> {
  const ids = new Set<string>();
  let top = '';
  for (const line of markdown.split('\n')) {
    const heading = /^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s/.exec(line);
    if (heading) {
      ids.add(heading[1]);
      if (line.startsWith('## ')) top = heading[1];
      continue;
    }
    if (/^##\s/.test(line)) top = '';
    const item = /^([a-z])\.\s/.exec(line);
    if (item && top) ids.add(top + item[1]);
  }
  return ids;
}

type Token =
  | { kind: 'page'; start: number; end: number; page: string; inDocs: boolean }
  | { kind: 'section'; start: number; end: number; ids: string[] };

function tokens(text: string): Token[] {
  const out: Token[] = [];
  for (const m of text.matchAll(/(docs\/)?([a-z][\w-]*)\.md\b/g))
    out.push({ kind: 'page', start: m.index, end: m.index + m[0].length, page: m[2], inDocs: !!m[1] });
  for (const m of text.matchAll(/§\s?(\d+[a-z]?(?:\.\d+)*[a-z]?)(?:[-–](\d+(?:\.\d+)*))?/g))
    out.push({
      kind: 'section',
      start: m.index,
      end: m.index + m[0].length,
      ids: m[2] ? [m[1], m[2]] : [m[1]],
    });
  return out.sort((a, b) => a.start - b.start);
}

/**
 * What is wrong with the citations of one file. `file` is relative to the root; `pages` maps each page of docs/
 * (without .md) to its sections.
 */
function citationProblems(file: string, text: string, pages: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  const ownPage = /^docs\/([\w-]+)\.md$/.exec(file)?.[1];
  const lineOf = (at: number) => text.slice(0, at).split('\n').length;
  const say = (at: number, what: string) => problems.push(`${file}:${lineOf(at)}: ${what}`);
  for (const m of text.matchAll(/walb-servers\.md|shared\/spec\b/g))
    say(m.index, `cites the specification outside the repository (${m[0]}); cite docs/ instead`);
  for (const m of text.matchAll(/\b(spec|formats|architecture|servers|wdev|operations)\s+§/g))
    say(m.index, `"${m[0]}" names no page; write docs/NAME.md §N`);
  // Between a page and its first section: spaces, or a line break inside a comment.
  const pageGap = /^[\s/*#]*$/;
  let last: Token | undefined;
  let lastPage: string | undefined;
  for (const t of tokens(text)) {
    const gap = last ? text.slice(last.end, t.start) : '';
    if (t.kind === 'page') {
      if ((t.inDocs || ownPage) && !pages.has(t.page) && (t.inDocs || /^\s*§/.test(text.slice(t.end))))
        say(t.start, `cites ${t.page}.md, which is not in docs/`);
      last = t;
      lastPage = t.inDocs || ownPage ? t.page : undefined;
      continue;
    }
    let page: string | undefined;
    if (last?.kind === 'page' && pageGap.test(gap)) page = lastPage;
    // A list goes on after a comma or an "and", also past a qualifier: `§7.1 step 3, §7.2`, `§13 e9/e11`.
    else if (last?.kind === 'section' && /^[^.:()§]{0,16}$/.test(gap) && /[,;]|\b(and|or)\b/.test(gap))
      page = lastPage;
    else page = ownPage;
    if (last?.kind === 'page' && pageGap.test(gap) && !page)
      say(t.start, `§${t.ids[0]} follows a page outside docs/; write docs/NAME.md §N`);
    else if (!page) say(t.start, `§${t.ids[0]} names no page; write docs/NAME.md §N`);
    else
      for (const id of t.ids)
        if (pages.has(page) && !pages.get(page)!.has(id)) say(t.start, `docs/${page}.md has no §${id}`);
    last = t;
    lastPage = page;
  }
  return problems;
}

function docsPages(): Map<string, Set<string>> {
  const dir = path.join(ROOT, 'docs');
  return new Map(
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.md'))
      .map((f) => [f.slice(0, -3), sectionsOf(fs.readFileSync(path.join(dir, f), 'utf8'))]),
  );
}

function scannedFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    if (SKIPPED.includes(rel)) return;
    const abs = path.join(ROOT, rel);
    if (fs.statSync(abs).isDirectory()) for (const f of fs.readdirSync(abs)) walk(path.posix.join(rel, f));
    else if (TEXT_FILE.test(rel)) out.push(rel);
  };
  for (const rel of SCANNED) walk(rel);
  return out;
}

test('every section cited in the code, the protos, the README and docs/ exists in docs/', (t) => {
  const pages = docsPages();
  t.true(pages.has('servers') && pages.has('formats'));
  const files = scannedFiles();
  t.true(files.includes('src/storage/server.ts') && files.includes('native/src/core/format.hpp'));
  const problems = files.flatMap((f) =>
    citationProblems(f, fs.readFileSync(path.join(ROOT, f), 'utf8'), pages),
  );
  t.deepEqual(problems, []);
});

test('the checker refuses the outside specification, a missing section, a page outside docs/ and a bare §', (t) => {
  const pages = new Map([
    ['servers', sectionsOf('## 7. Protocols\n### 7.1 wlog\n### 7.2 wdiff\n')],
    ['formats', sectionsOf('## 2. Logpacks\n### 2.7 Reading\n## 8. Decisions\n\na. one\nc. three\n')],
  ]);
  const check = (text: string, file = 'src/x.ts') => citationProblems(file, text, pages);
  t.deepEqual(check('// docs/servers.md §7.1 step 3, §7.2 and docs/formats.md §2.7, §8c\n'), []);
  t.deepEqual(check('// wdiffs (docs/servers.md §7.1,\n// §7.2): forwarding\n'), []);
  t.deepEqual(check('see §7.2 and formats.md §8a', 'docs/servers.md'), []);
  t.regex(check('// as walb-servers.md §7.2 says\n').join(), /outside the repository/);
  t.regex(check('// ../shared/spec/formats.md\n').join(), /outside the repository/);
  t.regex(check('// docs/servers.md §7.3\n').join(), /has no §7\.3/);
  t.regex(check('// docs/formats.md §8b\n').join(), /has no §8b/);
  t.regex(check('// docs/formats.md §2.7-2.9\n').join(), /has no §2\.9/);
  t.regex(check('// docs/nowhere.md\n').join(), /nowhere\.md, which is not in docs/);
  t.regex(check('// formats §2.7\n').join(), /names no page/);
  t.regex(check('// (§7.1)\n').join(), /names no page/);
  t.regex(check('// formats.md §2.7\n').join(), /outside docs/);
  t.regex(check('see nowhere.md §1', 'docs/servers.md').join(), /nowhere\.md, which is not in docs/);
});
