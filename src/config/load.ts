// Loading a role's convict schema: defaults, then the config file, then environment variables, then the
// command-line overrides. Any problem becomes a CONFIG error naming the key, and the binaries exit with 2.
import fs from 'node:fs';
import convict from 'convict';
import { WalbError, errorMessage } from '../common/errors';
import { LOG_LEVELS } from '../common/log';

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

/** convict format: HOST:PORT, empty (the main listen address's host, a port the system picks) or "off". */
convict.addFormat({
  name: 'bulk-listen',
  validate(value: unknown): void {
    if (value === 'off') return;
    hostPortFormat.validate(value);
  },
});

/** convict format: true or false only (convict's Boolean turns any string but 'false' into true). */
convict.addFormat({
  name: 'strict-boolean',
  validate(value: unknown): void {
    if (typeof value !== 'boolean') throw new Error(`must be true or false, got '${String(value)}'`);
  },
});

/** The `logLevel` key of every role: the environment wins over the file, as for every key with an env. */
export const logLevelSchema = {
  doc: 'Least level logged: debug, info, warn or error.',
  format: [...LOG_LEVELS],
  default: 'info' as const,
  env: 'WALB_LOG_LEVEL',
};

/** The `tls` block of a role's schema: mutual TLS, all three files or none (plaintext). */
export const tlsSchema = {
  ca: {
    doc: 'CA certificate (PEM) that signs every server and controller; empty: plaintext.',
    format: String,
    default: '',
  },
  cert: {
    doc: "This server's certificate (PEM), used as server and as client.",
    format: String,
    default: '',
  },
  key: { doc: "This server's private key (PEM).", format: String, default: '' },
};

/** All three TLS files or none. */
export function checkTls(tls: { ca: string; cert: string; key: string }): void {
  const set = [tls.ca, tls.cert, tls.key].filter(Boolean).length;
  if (set !== 0 && set !== 3)
    throw new WalbError('CONFIG', 'tls: give ca, cert and key together (or none for plaintext)');
  for (const k of ['ca', 'cert', 'key'] as const)
    if (tls[k] && !fs.existsSync(tls[k])) throw new WalbError('CONFIG', `tls.${k}: ${tls[k]} does not exist`);
}

/** The `metricsListen` and `metricsAllowRemote` keys of every role (docs/operations.md, "Metrics"). */
export const metricsSchema = {
  metricsListen: {
    doc:
      'Serve Prometheus metrics on GET /metrics at this HOST:PORT (plaintext HTTP); empty: no metrics. A ' +
      'non-loopback address needs metricsAllowRemote.',
    format: 'host-port',
    default: '',
  },
  metricsAllowRemote: {
    doc: 'Allow metricsListen on an address other than loopback (the metrics have no TLS nor authentication).',
    format: 'strict-boolean',
    default: false,
  },
};
