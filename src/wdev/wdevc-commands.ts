// wdevc: control of walb-wdevd's wdevs. Command names follow WalB's wdevc where they correspond; a wdev is
// named by its name (WalB takes /dev/walb/NAME).
import {
  intOpt,
  printJson,
  stringOpt,
  usageError,
  type Command,
  type Options,
  type Values,
} from '../common/cli';
import { parseSize, formatBytes } from '../common/units';
import { wdevcSocket } from '../config/wdevd';
import { WdevClient, type WdevStatusReply } from './client';

const common: Options = {
  socket: { type: 'string' },
  'run-dir': { type: 'string' },
  json: { type: 'boolean' },
};
const commonHelp = {
  socket: 'control socket of walb-wdevd (default RUNDIR/wdevd.sock)',
  'run-dir': 'run directory of walb-wdevd (default /run/walb)',
  json: 'machine-readable output',
};
/** The value names of wdevc's options in the help. */
const placeholders: Record<string, string> = {
  socket: 'PATH',
  'run-dir': 'DIR',
  pbs: 'BYTES',
  'max-logpack-kb': 'KB',
  'max-pending-mb': 'MB',
  'flush-interval-mb': 'MB',
  'flush-interval-ms': 'MS',
  'checkpoint-interval-ms': 'MS',
};

async function withClient<T>(values: Values, fn: (c: WdevClient) => Promise<T>): Promise<T> {
  const c = new WdevClient(wdevcSocket(stringOpt(values, 'socket'), stringOpt(values, 'run-dir')), 30000);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

function printStatus(s: WdevStatusReply, values: Values): void {
  if (values.json) return printJson(s);
  const l = s.lsids;
  const lines = [
    `name          ${s.name}`,
    `ldev          ${s.ldev}`,
    `ddev          ${s.ddev}`,
    `state         ${s.failed ? `FAILED: ${s.failure}` : s.frozen ? 'frozen' : 'running'}${s.overflow ? ', OVERFLOW' : ''}`,
    `size          ${formatBytes(s.deviceSize * 512)} (${s.deviceSize} LB), pbs ${s.pbs}`,
    `uuid          ${s.uuid}`,
    `log usage     ${s.logUsage} / ${s.logCapacity} PB`,
  ];
  if (l) {
    for (const k of ['latest', 'completed', 'permanent', 'written', 'prevWritten', 'oldest'] as const)
      lines.push(`${k.padEnd(14)}${l[k]}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

/** A command on one wdev that prints one value of its status (get-*, is-*). */
function query(name: string, summary: string, pick: (s: WdevStatusReply) => number | boolean): Command {
  return {
    name,
    args: 'NAME',
    summary,
    options: common,
    optionHelp: commonHelp,
    minArgs: 1,
    maxArgs: 1,
    run: (args, values) =>
      withClient(values, async (c) => {
        const v = pick(await c.status(args[0]));
        if (values.json) printJson(v);
        else process.stdout.write(`${typeof v === 'boolean' ? (v ? 1 : 0) : v}\n`);
      }),
  };
}

/** A command that changes a wdev and prints its status afterwards. */
function action(
  name: string,
  args: string,
  summary: string,
  nArgs: [number, number],
  fn: (c: WdevClient, args: string[], values: Values) => Promise<WdevStatusReply>,
  extra: Options = {},
  extraHelp: Record<string, string> = {},
): Command {
  return {
    name,
    args,
    summary,
    options: { ...common, ...extra },
    optionHelp: { ...commonHelp, ...extraHelp },
    minArgs: nArgs[0],
    maxArgs: nArgs[1],
    run: (a, values) => withClient(values, async (c) => printStatus(await fn(c, a, values), values)),
  };
}

function wholeNumber(text: string, what: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)))
    throw usageError(`${what}: '${text}' is not a whole number`);
  return Number(text);
}

export const wdevcCommands: Command[] = [
  {
    name: 'format-ldev',
    args: 'LDEV DDEV',
    summary: 'format a log device for a data device (random uuid and salt; only super sector 0 is written)',
    options: {
      ...common,
      name: { type: 'string', short: 'n' },
      pbs: { type: 'string' },
      'no-discard': { type: 'boolean' },
    },
    optionHelp: {
      ...commonHelp,
      name: 'name stored in the super sector (at most 25 characters)',
      pbs: 'physical block size for regular files: 512 (default) or 4096',
      'no-discard': 'do not discard the log device first (WalB: -nd)',
    },
    minArgs: 2,
    maxArgs: 2,
    run: (args, values) =>
      withClient(values, async (c) => {
        const r = await c.formatLdev({
          ldev: args[0],
          ddev: args[1],
          name: stringOpt(values, 'name') ?? '',
          pbs: intOpt(values, 'pbs', 512),
          noDiscard: values['no-discard'] === true,
        });
        if (values.json) printJson(r.super);
        else
          process.stdout.write(
            `formatted ${args[0]}: ring buffer ${r.super?.ringBufferSize} PB of ${r.super?.pbs} bytes, uuid ${r.super?.uuid}\n`,
          );
      }),
  },
  action(
    'create-wdev',
    'LDEV DDEV',
    'start a wdev on a formatted log device and a data device; it is exported over NBD under its name',
    [2, 2],
    (c, a, v) =>
      c.createWdev({
        ldev: a[0],
        ddev: a[1],
        name: stringOpt(v, 'name') ?? '',
        options: {
          maxLogpackKb: intOpt(v, 'max-logpack-kb', 0),
          maxPendingMb: intOpt(v, 'max-pending-mb', 0),
          logFlushIntervalMb: intOpt(v, 'flush-interval-mb', 0),
          logFlushIntervalMs: intOpt(v, 'flush-interval-ms', 0),
          checkpointIntervalMs: intOpt(v, 'checkpoint-interval-ms', 10000),
          errorBeforeOverflow: v['error-before-overflow'] === true,
        },
      }),
    {
      name: { type: 'string', short: 'n' },
      'max-logpack-kb': { type: 'string' },
      'max-pending-mb': { type: 'string' },
      'flush-interval-mb': { type: 'string' },
      'flush-interval-ms': { type: 'string' },
      'checkpoint-interval-ms': { type: 'string' },
      'error-before-overflow': { type: 'boolean' },
    },
    {
      name: 'wdev (export) name; default: the name in the super sector',
      'max-logpack-kb': 'largest logpack of several IOs (default 32)',
      'max-pending-mb': 'logged data not yet on the ddev before writes wait (default 32)',
      'flush-interval-mb': 'sync the log after this much (default 16)',
      'flush-interval-ms': 'sync the log at least this often (default 100)',
      'checkpoint-interval-ms': 'super sector checkpoint period, 0 = none (default 10000)',
      'error-before-overflow': 'fail writes instead of overwriting logs not yet extracted',
    },
  ),
  action(
    'delete-wdev',
    'NAME',
    'stop a wdev: drain writes to the ddev, checkpoint, remove it',
    [1, 1],
    (c, a) => c.deleteWdev(a[0]),
  ),
  {
    name: 'list-wdev',
    args: '',
    summary: 'list the wdevs with their state and log usage',
    options: common,
    optionHelp: commonHelp,
    maxArgs: 0,
    run: (_a, values) =>
      withClient(values, async (c) => {
        const list = await c.listWdev();
        if (values.json) return printJson(list);
        const rows = list.map((s) =>
          [
            s.name,
            s.failed ? 'failed' : s.frozen ? 'frozen' : 'running',
            s.overflow ? 'overflow' : '-',
            formatBytes(s.deviceSize * 512),
            `${s.logUsage}/${s.logCapacity}`,
            s.ldev,
            s.ddev,
          ].join('\t'),
        );
        process.stdout.write(['NAME\tSTATE\tOVERFLOW\tSIZE\tLOG(PB)\tLDEV\tDDEV', ...rows].join('\n') + '\n');
      }),
  },
  action('status', 'NAME', 'show lsids, log usage and state of a wdev', [1, 1], (c, a) => c.status(a[0])),
  query('get-oldest-lsid', 'print the oldest lsid', (s) => s.lsids?.oldest ?? 0),
  query('get-written-lsid', 'print the written lsid', (s) => s.lsids?.written ?? 0),
  query('get-permanent-lsid', 'print the permanent lsid', (s) => s.lsids?.permanent ?? 0),
  query('get-completed-lsid', 'print the completed lsid', (s) => s.lsids?.completed ?? 0),
  query('get-latest-lsid', 'print the latest lsid', (s) => s.lsids?.latest ?? 0),
  query('get-log-usage', 'print latest - oldest [PB]', (s) => s.logUsage),
  query('get-log-capacity', 'print the ring buffer size [PB]', (s) => s.logCapacity),
  query('get-checkpoint-interval', 'print the checkpoint interval [ms]', (s) => s.checkpointIntervalMs),
  query(
    'is-overflow',
    'print 1 when unextracted logs were overwritten (sticky until reset-wal)',
    (s) => s.overflow,
  ),
  query('is-frozen', 'print 1 while the wdev is frozen', (s) => s.frozen),
  action(
    'set-oldest-lsid',
    'NAME LSID',
    'free log space: logs below LSID may be overwritten',
    [2, 2],
    (c, a) => c.setOldestLsid(a[0], wholeNumber(a[1], 'LSID')),
  ),
  action('take-checkpoint', 'NAME', 'write the super sector now', [1, 1], (c, a) => c.takeCheckpoint(a[0])),
  action('set-checkpoint-interval', 'NAME MS', 'set the checkpoint period (0 = none)', [2, 2], (c, a) =>
    c.setCheckpointInterval(a[0], wholeNumber(a[1], 'MS')),
  ),
  action(
    'reset-wal',
    'NAME',
    'drop all logs: lsids 0, new uuid and salt, overflow cleared (a backup must start with a full sync)',
    [1, 1],
    (c, a) => c.resetWal(a[0]),
  ),
  action(
    'freeze',
    'NAME [TIMEOUT_SEC]',
    'stop write processing and checkpoints (until melt or the timeout)',
    [1, 2],
    (c, a) => c.freeze(a[0], a[1] === undefined ? 0 : wholeNumber(a[1], 'TIMEOUT_SEC')),
  ),
  action('melt', 'NAME', 'resume a frozen wdev', [1, 1], (c, a) => c.melt(a[0])),
  action(
    'resize',
    'NAME [SIZE]',
    'grow a wdev to SIZE (e.g. 64G; default: the whole ddev)',
    [1, 2],
    (c, a) => {
      const bytes = a[1] === undefined ? 0 : parseSize(a[1], 'SIZE');
      if (bytes % 512 !== 0) throw usageError('SIZE must be a multiple of 512 bytes');
      return c.resize(a[0], bytes / 512);
    },
  ),
];

for (const c of wdevcCommands) c.placeholders = placeholders;
