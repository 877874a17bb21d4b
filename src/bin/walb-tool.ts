#!/usr/bin/env node
import { runCli } from '../common/cli';
import { commands } from '../tool/commands';

const DESCRIPTION = 'Offline tools for WalB logs (wlog), diffs (wdiff), log devices and images.';

runCli('walb-tool', DESCRIPTION, commands, process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
