#!/usr/bin/env node
import { runCli } from '../common/cli';
import { wdevcCommands } from '../wdev/wdevc-commands';

const DESCRIPTION =
  'Control of walb-wdevd: format log devices, create and delete wdevs, lsids, checkpoints, reset-wal.';

runCli('wdevc', DESCRIPTION, wdevcCommands, process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
