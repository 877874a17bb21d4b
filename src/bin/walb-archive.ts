#!/usr/bin/env node
// walb-archive: base images, wdiff chains and restores per volume (file backend).
import { ArchiveServer } from '../archive/server';
import { runDaemon } from '../common/daemon';
import { loadArchiveConfig } from '../config/archive';

const HELP = `usage: walb-archive [--config PATH] [--listen HOST:PORT] [--data-dir DIR] [--bulk-listen ADDR]
                    [--metrics-listen HOST:PORT]
       walb-archive --version | --help

Keeps a base image and a chain of wdiffs per volume, receives full backups from storages and wdiffs from
proxies, and restores any restorable snapshot into an image file. gRPC service walb.v1.Archive (with health,
reflection and walb.v1.Operations). Stops cleanly on SIGTERM or SIGINT.

options:
  --config PATH        convict config file (default /etc/walb/archive.json when present)
  --listen HOST:PORT   gRPC address (default 127.0.0.1:10200)
  --data-dir DIR       volumes (default /var/lib/walb/archive)
  --bulk-listen ADDR   native receiver of full-backup bytes: HOST:PORT, "" for the listen host and a port
                       the system picks (default), or "off" (full backups then use the main port, slower)
  --metrics-listen HOST:PORT
                       Prometheus metrics: plaintext HTTP GET /metrics (default off; a non-loopback
                       address needs metricsAllowRemote in the config)
  --version            print the version
  -h, --help           print this help`;

void runDaemon(
  'walb-archive',
  HELP,
  {
    config: { type: 'string' },
    listen: { type: 'string' },
    'data-dir': { type: 'string' },
    'bulk-listen': { type: 'string' },
    'metrics-listen': { type: 'string' },
  },
  (v, log) =>
    new ArchiveServer(
      loadArchiveConfig({
        config: v.config as string | undefined,
        listen: v.listen as string | undefined,
        dataDir: v['data-dir'] as string | undefined,
        bulkListen: v['bulk-listen'] as string | undefined,
        metricsListen: v['metrics-listen'] as string | undefined,
      }),
      log,
    ),
).then((code) => process.exit(code));
