#!/usr/bin/env node
// walb-storage: ships the logs of wdevs to proxies and runs full backups to the primary archive.
import { runDaemon } from '../common/daemon';
import { loadStorageConfig } from '../config/storage';
import { StorageServer } from '../storage/server';

const HELP = `usage: walb-storage [--config PATH] [--listen HOST:PORT] [--data-dir DIR] [--archive HOST:PORT]
                    [--proxy HOST:PORT,...] [--wdevd-socket PATH] [--metrics-listen HOST:PORT]
       walb-storage --version | --help

Per volume (a wdev of walb-wdevd): ships the logs to the proxies in priority order (the next one when one is
down), takes snapshots, and runs full backups to the primary archive. gRPC service walb.v1.Storage (with health,
reflection and walb.v1.Operations). Stops cleanly on SIGTERM or SIGINT.

options:
  --config PATH           convict config file (default /etc/walb/storage.json when present)
  --listen HOST:PORT      gRPC address (default 127.0.0.1:10000)
  --data-dir DIR          volume metadata (default /var/lib/walb/storage)
  --archive HOST:PORT     the primary archive (overrides the config: switch the primary archive here)
  --proxy HOST:PORT,...   proxies in priority order
  --wdevd-socket PATH     walb-wdevd's control socket (default /run/walb/wdevd.sock)
  --metrics-listen HOST:PORT
                          Prometheus metrics: plaintext HTTP GET /metrics (default off; a non-loopback
                          address needs metricsAllowRemote in the config)
  --version               print the version
  -h, --help              print this help`;

void runDaemon(
  'walb-storage',
  HELP,
  {
    config: { type: 'string' },
    listen: { type: 'string' },
    'data-dir': { type: 'string' },
    archive: { type: 'string' },
    proxy: { type: 'string' },
    'wdevd-socket': { type: 'string' },
    'metrics-listen': { type: 'string' },
  },
  (v, log) =>
    new StorageServer(
      loadStorageConfig({
        config: v.config as string | undefined,
        listen: v.listen as string | undefined,
        dataDir: v['data-dir'] as string | undefined,
        archive: v.archive as string | undefined,
        proxy: v.proxy as string | undefined,
        wdevdSocket: v['wdevd-socket'] as string | undefined,
        metricsListen: v['metrics-listen'] as string | undefined,
      }),
      log,
    ),
).then((code) => process.exit(code));
