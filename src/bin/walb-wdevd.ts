#!/usr/bin/env node
// walb-wdevd: the userspace WalB device daemon. See docs/wdev.md.
import { runDaemon } from '../common/daemon';
import { loadWdevdConfig } from '../config/wdevd';
import { WdevDaemon } from '../wdev/daemon';

const HELP = `usage: walb-wdevd [--config PATH] [--run-dir DIR] [--state-dir DIR] [--nbd-tcp HOST:PORT]
                  [--metrics-listen HOST:PORT]
       walb-wdevd --version | --help

Hosts userspace WalB devices (wdevs): every write is logged into the wdev's log device in WalB's format
before it reaches the data device. Serves the wdevs over NBD (RUNDIR/nbd.sock, export name = wdev name) and
the control API for wdevc over gRPC (RUNDIR/wdevd.sock). Stops cleanly on SIGTERM or SIGINT.

options:
  --config PATH        convict config file (default /etc/walb/wdevd.json when present)
  --run-dir DIR        sockets (default /run/walb)
  --state-dir DIR      registry of wdevs (default /var/lib/walb/wdevd)
  --nbd-tcp HOST:PORT  also serve NBD on this loopback address
  --metrics-listen HOST:PORT
                       Prometheus metrics: plaintext HTTP GET /metrics (default off; a non-loopback
                       address needs metricsAllowRemote in the config)
  --version            print the version
  -h, --help           print this help`;

void runDaemon(
  'walb-wdevd',
  HELP,
  {
    config: { type: 'string' },
    'run-dir': { type: 'string' },
    'state-dir': { type: 'string' },
    'nbd-tcp': { type: 'string' },
    'metrics-listen': { type: 'string' },
  },
  (v, log) =>
    new WdevDaemon(
      loadWdevdConfig({
        config: v.config as string | undefined,
        runDir: v['run-dir'] as string | undefined,
        stateDir: v['state-dir'] as string | undefined,
        nbdTcp: v['nbd-tcp'] as string | undefined,
        metricsListen: v['metrics-listen'] as string | undefined,
      }),
      log,
    ),
).then((code) => process.exit(code));
