// Readiness for systemd (Type=notify, docs/operations.md "Install"): with NOTIFY_SOCKET set, a daemon sends
// READY=1 once it listens and STOPPING=1 when told to stop, from its own PID (NotifyAccess=main). The service
// manager's end is a real unix datagram socket with SO_PASSCRED, as systemd's, held by python3.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ROOT } from '../processes';
import { freePort } from '../system-harness';
import { tempArea } from '../temp-files';
import { waitUntil } from '../waiting';

const area = tempArea('readiness');
test.after.always(() => area.cleanup());

const BIN = (name: string) => path.join(ROOT, 'dist', 'src', 'bin', `${name}.js`);

// Binds the socket NOTIFY_SOCKET names ('@name': abstract) and prints one JSON line per datagram with the
// sender's PID from its SCM_CREDENTIALS, the way systemd tells which process of which unit spoke.
const RECEIVER = `
import json, socket, struct, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\\0' + name[1:] if name.startswith('@') else name)
print(json.dumps({'bound': True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pids = [struct.unpack('3i', d)[0] for lvl, typ, d in anc
            if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS]
    print(json.dumps({'pid': pids[0] if pids else None, 'message': data.decode()}), flush=True)
`;

interface Notification {
  pid: number | null;
  message: string;
}

class NotifyReceiver {
  readonly received: Notification[] = [];
  private proc: ChildProcess | undefined;
  private out = '';

  constructor(readonly socket: string) {}

  async start(): Promise<void> {
    const p = spawn('python3', ['-c', RECEIVER, this.socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.proc = p;
    let bound = false;
    p.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      let nl: number;
      while ((nl = this.out.indexOf('\n')) >= 0) {
        const line = JSON.parse(this.out.slice(0, nl)) as Notification & { bound?: boolean };
        this.out = this.out.slice(nl + 1);
        if (line.bound) bound = true;
        else this.received.push(line);
      }
    });
    await waitUntil(() => {
      if (p.exitCode !== null) throw new Error(`the python3 receiver exited with ${p.exitCode}`);
      return bound;
    }, `the notify socket ${this.socket}`);
  }

  async waitFor(message: string): Promise<Notification> {
    await waitUntil(
      () => this.received.some((n) => n.message === message),
      () => `${message} on ${this.socket}; received ${JSON.stringify(this.received)}`,
    );
    return this.received.find((n) => n.message === message)!;
  }

  stop(): void {
    this.proc?.kill('SIGKILL');
  }
}

function startDaemon(
  name: string,
  args: string[],
  notifySocket: string,
): { proc: ChildProcess; stderr: () => string } {
  let stderr = '';
  const proc = spawn(process.execPath, [BIN(name), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, NOTIFY_SOCKET: notifySocket },
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { proc, stderr: () => stderr };
}

async function stopDaemon(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null) return proc.exitCode;
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGTERM');
  return exited;
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

test('walb-wdevd sends READY=1 from its own PID only once its control socket exists, and STOPPING=1 at SIGTERM', async (t) => {
  const dir = area.name('wdevd');
  const receiver = new NotifyReceiver(path.join(dir, 'notify.sock'));
  fs.mkdirSync(dir);
  await receiver.start();
  const runDir = path.join(dir, 'run');
  const wdevd = startDaemon(
    'walb-wdevd',
    ['--run-dir', runDir, '--state-dir', path.join(dir, 'state')],
    receiver.socket,
  );
  try {
    const ready = await receiver.waitFor('READY=1');
    t.true(fs.existsSync(path.join(runDir, 'wdevd.sock')), 'the control socket exists at READY=1');
    t.true(fs.existsSync(path.join(runDir, 'nbd.sock')), 'the NBD socket exists at READY=1');
    t.is(ready.pid, wdevd.proc.pid!, 'sent by the daemon itself, not by a helper process');
    t.is(await stopDaemon(wdevd.proc), 0, wdevd.stderr());
    const stopping = await receiver.waitFor('STOPPING=1');
    t.is(stopping.pid, wdevd.proc.pid!);
    t.deepEqual(
      receiver.received.map((n) => n.message),
      ['READY=1', 'STOPPING=1'],
    );
  } finally {
    wdevd.proc.kill('SIGKILL');
    receiver.stop();
  }
});

test('walb-archive sends READY=1 to an abstract NOTIFY_SOCKET (@name) once its port accepts connections', async (t) => {
  const dir = area.name('archive');
  const receiver = new NotifyReceiver(`@walb-readiness-${process.pid}-${Date.now()}`);
  await receiver.start();
  const port = await freePort();
  const archive = startDaemon(
    'walb-archive',
    ['--listen', `127.0.0.1:${port}`, '--data-dir', dir],
    receiver.socket,
  );
  try {
    const ready = await receiver.waitFor('READY=1');
    t.true(await connects(port), `port ${port} accepts at READY=1`);
    t.is(ready.pid, archive.proc.pid!);
    t.is(await stopDaemon(archive.proc), 0, archive.stderr());
    await receiver.waitFor('STOPPING=1');
  } finally {
    archive.proc.kill('SIGKILL');
    receiver.stop();
  }
});

test('a NOTIFY_SOCKET nobody listens on is logged as notify-failed and the daemon serves on', async (t) => {
  const dir = area.name('proxy');
  const port = await freePort();
  const proxy = startDaemon(
    'walb-proxy',
    ['--listen', `127.0.0.1:${port}`, '--data-dir', dir],
    path.join(area.dir, 'nobody-listens.sock'),
  );
  try {
    await waitUntil(
      () => {
        if (proxy.proc.exitCode !== null) throw new Error(`walb-proxy exited: ${proxy.stderr()}`);
        return proxy.stderr().includes('"event":"notify-failed"');
      },
      () => `notify-failed in ${proxy.stderr()}`,
    );
    t.regex(proxy.stderr(), /"level":"warn".*"event":"notify-failed".*"state":"READY=1"/);
    t.true(await connects(port), 'still serving');
    t.is(await stopDaemon(proxy.proc), 0, proxy.stderr());
  } finally {
    proxy.proc.kill('SIGKILL');
  }
});
