// The resync step of a replication (docs/servers.md §7.7): the destination's diffs and restored images dropped,
// its base image fixed by hash comparison against the source's base image, then the source's base state and uuids
// adopted. Called by the replication loop (replication.ts) when the destination needs it or the operator asks.
import { WalbError } from '../common/errors';
import type { Promised } from '../common/grpc';
import type { Logger } from '../common/log';
import type { OperationHandle } from '../common/operations';
import type { ArchiveConfig } from '../config/archive';
import type { ArchiveClient } from '../generated/walb/v1/Archive';
import type { ArchiveVolumeStore } from './volume-store';

export interface ResyncStep {
  volume: string;
  /** The source's volume: its base image and state are what the destination takes. */
  source: ArchiveVolumeStore;
  /** The destination archive. */
  destination: Promised<ArchiveClient>;
  /** Progress in bytes compared; cancelled through its signal. */
  op: OperationHandle;
  config: ArchiveConfig;
  log: Logger;
}

export async function resyncStep(step: ResyncStep): Promise<void> {
  throw new WalbError('UNSUPPORTED', `resync of ${step.volume} is not built yet`);
}
