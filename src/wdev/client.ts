// Typed client of walb-wdevd's control service (used by wdevc, the storage server and tests).
import * as grpc from '@grpc/grpc-js';
import { call, loadProto } from '../common/grpc';
import type { ProtoGrpcType } from '../generated/wdev';
import type { CreateWdevRequest } from '../generated/walb/v1/CreateWdevRequest';
import type { FormatLdevReply__Output } from '../generated/walb/v1/FormatLdevReply';
import type { FormatLdevRequest } from '../generated/walb/v1/FormatLdevRequest';
import type { ListWdevReply__Output } from '../generated/walb/v1/ListWdevReply';
import type { WdevControlClient } from '../generated/walb/v1/WdevControl';
import type { WdevStatus__Output } from '../generated/walb/v1/WdevStatus';

export type WdevStatusReply = WdevStatus__Output;

export class WdevClient {
  private readonly client: WdevControlClient;

  constructor(
    readonly socket: string,
    private readonly timeoutMs = 0,
  ) {
    const { proto } = loadProto<ProtoGrpcType>('walb/v1/wdev.proto');
    this.client = new proto.walb.v1.WdevControl(`unix:${socket}`, grpc.credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  private rpc<Res>(method: string, req: object): Promise<Res> {
    return call<object, Res>(this.client, method, req, this.timeoutMs);
  }

  formatLdev(req: FormatLdevRequest): Promise<FormatLdevReply__Output> {
    return this.rpc('FormatLdev', req);
  }
  createWdev(req: CreateWdevRequest): Promise<WdevStatusReply> {
    return this.rpc('CreateWdev', req);
  }
  deleteWdev(name: string): Promise<WdevStatusReply> {
    return this.rpc('DeleteWdev', { name });
  }
  async listWdev(): Promise<WdevStatusReply[]> {
    return (await this.rpc<ListWdevReply__Output>('ListWdev', {})).wdevs;
  }
  status(name: string): Promise<WdevStatusReply> {
    return this.rpc('GetStatus', { name });
  }
  setOldestLsid(name: string, lsid: number): Promise<WdevStatusReply> {
    return this.rpc('SetOldestLsid', { name, lsid });
  }
  takeCheckpoint(name: string): Promise<WdevStatusReply> {
    return this.rpc('TakeCheckpoint', { name });
  }
  setCheckpointInterval(name: string, intervalMs: number): Promise<WdevStatusReply> {
    return this.rpc('SetCheckpointInterval', { name, intervalMs });
  }
  resetWal(name: string): Promise<WdevStatusReply> {
    return this.rpc('ResetWal', { name });
  }
  freeze(name: string, timeoutSec: number): Promise<WdevStatusReply> {
    return this.rpc('Freeze', { name, timeoutSec });
  }
  melt(name: string): Promise<WdevStatusReply> {
    return this.rpc('Melt', { name });
  }
  resize(name: string, size: number): Promise<WdevStatusReply> {
    return this.rpc('Resize', { name, size });
  }
}
