#!/usr/bin/env node
// walb-proxy: wlogs in from storages, wdiffs out to archives.
import { runDaemon } from '../common/daemon';
import { loadProxyConfig } from '../config/proxy';
import { ProxyServer } from '../proxy/server';

const HELP = `usage: walb-proxy [--config PATH] [--listen HOST:PORT] [--data-dir DIR] [--metrics-listen HOST:PORT]
       walb-proxy --version | --help

Receives wlogs from storages, keeps each as an indexed wdiff (durable before the storage's ack) and forwards the
wdiffs to every archive registered for the volume, merging consecutive mergeable ones. gRPC service
walb.v1.Proxy (with health, reflection and walb.v1.Operations). Stops cleanly on SIGTERM or SIGINT.

options:
  --config PATH        convict config file (default /etc/walb/proxy.json when present)
  --listen HOST:PORT   gRPC address (default 127.0.0.1:10100)
  --data-dir DIR       volumes (default /var/lib/walb/proxy)
  --metrics-listen HOST:PORT
                       Prometheus metrics: plaintext HTTP GET /metrics (default off; a non-loopback
                       address needs metricsAllowRemote in the config)
  --version            print the version
  -h, --help           print this help`;

void runDaemon(
  'walb-proxy',
  HELP,
  {
    config: { type: 'string' },
    listen: { type: 'string' },
    'data-dir': { type: 'string' },
    'metrics-listen': { type: 'string' },
  },
  (v, log) =>
    new ProxyServer(
      loadProxyConfig({
        config: v.config as string | undefined,
        listen: v.listen as string | undefined,
        dataDir: v['data-dir'] as string | undefined,
        metricsListen: v['metrics-listen'] as string | undefined,
      }),
      log,
    ),
).then((code) => process.exit(code));
