// Typed client of walb-wdevd's control service (used by wdevc, the storage server and tests).
import * as grpc from '@grpc/grpc-js';
import { loadProto, promisify, type Promised } from '../common/grpc';
import type { ProtoGrpcType } from '../generated/wdev';
import type { CreateWdevRequest } from '../generated/walb/v1/CreateWdevRequest';
import type { FormatLdevReply__Output } from '../generated/walb/v1/FormatLdevReply';
import type { FormatLdevRequest } from '../generated/walb/v1/FormatLdevRequest';
import type { WdevControlClient } from '../generated/walb/v1/WdevControl';
import type { WdevStatus__Output } from '../generated/walb/v1/WdevStatus';

export type WdevStatusReply = WdevStatus__Output;

export class WdevClient {
  private readonly client: Promised<WdevControlClient>;

  constructor(
    readonly socket: string,
    timeoutMs = 0,
  ) {
    const { proto } = loadProto<ProtoGrpcType>('walb/v1/wdev.proto');
    this.client = promisify(
      new proto.walb.v1.WdevControl(`unix:${socket}`, grpc.credentials.createInsecure()),
      timeoutMs,
    );
  }

  close(): void {
    this.client.close();
  }

  formatLdev(req: FormatLdevRequest): Promise<FormatLdevReply__Output> {
    return this.client.FormatLdev(req);
  }
  createWdev(req: CreateWdevRequest): Promise<WdevStatusReply> {
    return this.client.CreateWdev(req);
  }
  deleteWdev(name: string): Promise<WdevStatusReply> {
    return this.client.DeleteWdev({ name });
  }
  async listWdev(): Promise<WdevStatusReply[]> {
    return (await this.client.ListWdev({})).wdevs;
  }
  status(name: string): Promise<WdevStatusReply> {
    return this.client.GetStatus({ name });
  }
  setOldestLsid(name: string, lsid: number): Promise<WdevStatusReply> {
    return this.client.SetOldestLsid({ name, lsid });
  }
  takeCheckpoint(name: string): Promise<WdevStatusReply> {
    return this.client.TakeCheckpoint({ name });
  }
  setCheckpointInterval(name: string, intervalMs: number): Promise<WdevStatusReply> {
    return this.client.SetCheckpointInterval({ name, intervalMs });
  }
  resetWal(name: string): Promise<WdevStatusReply> {
    return this.client.ResetWal({ name });
  }
  freeze(name: string, timeoutSec: number): Promise<WdevStatusReply> {
    return this.client.Freeze({ name, timeoutSec });
  }
  melt(name: string): Promise<WdevStatusReply> {
    return this.client.Melt({ name });
  }
  resize(name: string, size: number): Promise<WdevStatusReply> {
    return this.client.Resize({ name, size });
  }
}
