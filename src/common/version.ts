// The version every binary prints for --version: the one of package.json.
import fs from 'node:fs';
import path from 'node:path';

// dist/src/common/version.js -> <root>/package.json
const PACKAGE_JSON = path.resolve(__dirname, '..', '..', '..', 'package.json');

export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;
}

/** The line `TOOL --version` prints. */
export function versionLine(tool: string): string {
  return `${tool} ${packageVersion()}`;
}
