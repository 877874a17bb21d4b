// Loading a role's convict schema: defaults, then the config file, then environment variables, then the
// command-line overrides. Any problem becomes a CONFIG error naming the key, and the binaries exit with 2.
import fs from 'node:fs';
import convict from 'convict';
import { WalbError, errorMessage } from '../common/errors';

export function loadConfig<T>(
  schema: convict.Schema<T>,
  file: string | undefined,
  overrides: Record<string, unknown>,
  defaultFile?: string,
): T {
  let config: convict.Config<T>;
  try {
    config = convict(schema);
  } catch (err) {
    throw new WalbError('CONFIG', `bad config schema: ${errorMessage(err)}`);
  }
  const path = file ?? (defaultFile && fs.existsSync(defaultFile) ? defaultFile : undefined);
  if (path) {
    if (!fs.existsSync(path)) throw new WalbError('CONFIG', `config file ${path} does not exist`);
    try {
      config.loadFile(path);
    } catch (err) {
      throw new WalbError('CONFIG', `config file ${path}: ${errorMessage(err)}`);
    }
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    try {
      config.set(key as never, value as never);
    } catch (err) {
      throw new WalbError('CONFIG', `${key}: ${errorMessage(err)}`);
    }
  }
  try {
    config.validate({ allowed: 'strict' });
  } catch (err) {
    throw new WalbError('CONFIG', `invalid configuration${path ? ` in ${path}` : ''}: ${errorMessage(err)}`);
  }
  return config.getProperties();
}

/** convict format: HOST:PORT, or empty. */
export const hostPortFormat = {
  name: 'host-port',
  validate(value: unknown): void {
    if (value === '') return;
    if (typeof value !== 'string' || !/^[^\s:]+:\d{1,5}$/.test(value) || Number(value.split(':')[1]) > 65535)
      throw new Error(`must be HOST:PORT, got '${String(value)}'`);
  },
};
convict.addFormat(hostPortFormat);

/** convict format: true or false only (convict's Boolean turns any string but 'false' into true). */
convict.addFormat({
  name: 'strict-boolean',
  validate(value: unknown): void {
    if (typeof value !== 'boolean') throw new Error(`must be true or false, got '${String(value)}'`);
  },
});
