// Errors with stable codes. The native addon already rejects with `err.code` set to one of NativeErrorCode.
export type NativeErrorCode =
  | 'INVALID_ARGUMENT'
  | 'CORRUPTION'
  | 'IO_ERROR'
  | 'NOT_FOUND'
  | 'UNSUPPORTED'
  | 'TRUNCATED'
  | 'UNAVAILABLE'
  | 'CANCELLED'
  | 'OUT_OF_MEMORY'
  | 'INTERNAL';

/** Codes of the servers' own checks (beside the native ones). */
export type ServiceErrorCode = 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'UNAVAILABLE' | 'CONFIG';

export type ErrorCode = NativeErrorCode | ServiceErrorCode | 'USAGE';

export class WalbError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WalbError';
  }
}

export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
