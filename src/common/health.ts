// What a server answers to grpc.health.v1 (docs/operations.md, "Health"): the whole server ('') and every
// service are NOT_SERVING while it starts and while it stops; the role's service is also NOT_SERVING while a
// volume needs an operator (a storage's overflowed log, a proxy that gave up on an archive), so that a health
// probe finds a stuck server without walbc.
import type { HealthImplementation } from 'grpc-health-check';
import { errorMessage } from './errors';
import type { Logger } from './log';

/** How often a server asks whether its volumes are stuck. */
export const HEALTH_PROBE_MS = 2000;

export type ServerPhase = 'starting' | 'serving' | 'stopping';
export type ServingStatus = 'SERVING' | 'NOT_SERVING';

/** The status of the whole server ('') and of each service, for a phase and the services that are stuck. */
export function healthStatuses(
  phase: ServerPhase,
  services: readonly string[],
  stuck: ReadonlySet<string>,
): Record<string, ServingStatus> {
  const up = phase === 'serving';
  const statuses: Record<string, ServingStatus> = { '': up ? 'SERVING' : 'NOT_SERVING' };
  for (const s of services) statuses[s] = up && !stuck.has(s) ? 'SERVING' : 'NOT_SERVING';
  return statuses;
}

/** The health of one server: its phase and its stuck services, pushed to the health service on every change. */
export class ServerHealth {
  private phase: ServerPhase = 'starting';
  private readonly stuck = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly health: HealthImplementation,
    private readonly services: readonly string[],
  ) {
    this.apply();
  }

  /** The server has started: SERVING unless a service is stuck. */
  serving(): void {
    this.phase = 'serving';
    this.apply();
  }

  /** The server is stopping: NOT_SERVING from now on, and the probe (if any) ends. */
  stopping(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.phase = 'stopping';
    this.apply();
  }

  setStuck(service: string, stuck: boolean): void {
    if (stuck === this.stuck.has(service)) return;
    if (stuck) this.stuck.add(service);
    else this.stuck.delete(service);
    this.apply();
  }

  /**
   * Asks `isStuck` every `intervalMs` whether `service` is stuck. A probe that fails leaves the status as it was
   * (a dependency being briefly away is not a stuck volume); it is logged at debug.
   */
  probe(service: string, intervalMs: number, isStuck: () => Promise<boolean>, log: Logger): void {
    let running = false;
    const run = async () => {
      if (running) return;
      running = true;
      try {
        this.setStuck(service, await isStuck());
      } catch (err) {
        log('debug', 'health-probe-failed', { service, error: errorMessage(err) });
      } finally {
        running = false;
      }
    };
    this.timer = setInterval(() => void run(), intervalMs);
    this.timer.unref();
    void run();
  }

  private apply(): void {
    for (const [service, status] of Object.entries(healthStatuses(this.phase, this.services, this.stuck)))
      this.health.setStatus(service, status);
  }
}
