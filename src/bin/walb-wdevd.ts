#!/usr/bin/env node
// walb-wdevd: the userspace WalB device daemon. See docs/wdev.md.
import { parseArgs } from 'node:util';
import { errorCode, errorMessage } from '../common/errors';
import { jsonLogger } from '../common/log';
import { loadWdevdConfig } from '../config/wdevd';
import { WdevDaemon } from '../wdev/daemon';

const HELP = `usage: walb-wdevd [--config PATH] [--run-dir DIR] [--state-dir DIR] [--nbd-tcp HOST:PORT]

Hosts userspace WalB devices (wdevs): every write is logged into the wdev's log device in WalB's format
before it reaches the data device. Serves the wdevs over NBD (RUNDIR/nbd.sock, export name = wdev name) and
the control API for wdevc over gRPC (RUNDIR/wdevd.sock). Stops cleanly on SIGTERM or SIGINT.

options:
  --config PATH        convict config file (default /etc/walb/wdevd.json when present)
  --run-dir DIR        sockets (default /run/walb)
  --state-dir DIR      registry of wdevs (default /var/lib/walb/wdevd)
  --nbd-tcp HOST:PORT  also serve NBD on this loopback address`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string' },
        'run-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        'nbd-tcp': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`walb-wdevd: ${errorMessage(err)}\n\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const log = jsonLogger('wdevd');
  let daemon: WdevDaemon;
  try {
    const config = loadWdevdConfig({
      config: values.config,
      runDir: values['run-dir'],
      stateDir: values['state-dir'],
      nbdTcp: values['nbd-tcp'],
    });
    daemon = new WdevDaemon(config, log);
  } catch (err) {
    process.stderr.write(`walb-wdevd: ${errorMessage(err)} [${errorCode(err) ?? 'INTERNAL'}]\n`);
    return 2;
  }
  try {
    await daemon.start();
  } catch (err) {
    log('error', 'start-failed', { error: errorMessage(err), code: errorCode(err) });
    process.stderr.write(`walb-wdevd: ${errorMessage(err)} [${errorCode(err) ?? 'INTERNAL'}]\n`);
    await daemon.stop().catch(() => undefined);
    return 1;
  }
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log('info', 'signal', { signal });
      daemon.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log('error', 'stop-failed', { error: errorMessage(err) });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

main().then((code) => process.exit(code));
