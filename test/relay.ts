// A TCP relay the tests control, to cut and restore the link between two servers (docs/servers.md §12 e9, e11).
import net from 'node:net';

export class Relay {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  /** Bytes forwarded so far, both ways, over every connection: a test cuts a transfer once this much passed. */
  forwarded = 0;

  constructor(
    private readonly target: { host: string; port: number },
    /** Forwards at most this many bytes per second each way (a slow link), 0: as fast as it can. */
    private readonly bytesPerSec = 0,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Listens (again, on the same port after a cut). */
  async open(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      this.forward(client, upstream);
      this.forward(upstream, client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private forward(from: net.Socket, to: net.Socket): void {
    if (!this.bytesPerSec) {
      from.on('data', (d: Buffer) => (this.forwarded += d.length));
      from.pipe(to);
      return;
    }
    from.on('data', (d: Buffer) => {
      this.forwarded += d.length;
      to.write(d);
      from.pause();
      setTimeout(() => from.resume(), (d.length / this.bytesPerSec) * 1000);
    });
    from.on('end', () => to.end());
  }

  /** The link goes down: connections are reset and new ones refused. */
  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}
