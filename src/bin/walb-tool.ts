#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
// Started without the extra CA certificates, which walb-tool never uses: loading them is most of Node's start
// where they are set (docs/testing.md, "Node's start"); scripts/install.sh's command does the same.
import { runCli } from '../common/cli';
import { commands } from '../tool/commands';

const DESCRIPTION = 'Offline tools for WalB logs (wlog), diffs (wdiff), log devices and images.';

runCli('walb-tool', DESCRIPTION, commands, process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
