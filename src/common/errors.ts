// Errors with stable codes. The native addon already rejects with `err.code` set to one of NATIVE_ERROR_CODES.
export const NATIVE_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'CORRUPTION',
  'IO_ERROR',
  'NOT_FOUND',
  'UNSUPPORTED',
  'TRUNCATED',
  'UNAVAILABLE',
  'CANCELLED',
  'OUT_OF_MEMORY',
  'INTERNAL',
] as const;

/** Codes of the servers' own checks (beside the native ones). */
export const SERVICE_ERROR_CODES = [
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'UNAVAILABLE',
  'CONFIG',
  'PERMISSION_DENIED',
] as const;

export const ERROR_CODES = [...NATIVE_ERROR_CODES, ...SERVICE_ERROR_CODES, 'USAGE'] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}

export class WalbError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WalbError';
  }
}

/** The stable code of an error; undefined for anything else (a Node.js system error, a plain Error). */
export function errorCode(err: unknown): ErrorCode | undefined {
  if (err && typeof err === 'object' && 'code' in err && isErrorCode(err.code)) return err.code;
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The error of work the operator cancelled (an operation, a transfer). */
export function cancelled(what = 'cancelled'): WalbError {
  return new WalbError('CANCELLED', what);
}
