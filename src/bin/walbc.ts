#!/usr/bin/env node
import { runCli } from '../common/cli';
import { walbcCommands } from '../controller/walbc-commands';

const DESCRIPTION =
  'Controller of a walb-ts backup group (storages, proxies, archives named in a layout file).';

runCli('walbc', DESCRIPTION, walbcCommands, process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
