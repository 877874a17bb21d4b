// Errors a backend throws (or rejects with) to choose the error value of the NBD reply. The values are the NBD
// protocol's own (proto.md, "Error values"), which equal Linux errno numbers.

export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** The error values a backend may choose. (EOVERFLOW and ENOTSUP belong to features this server does not offer.) */
export type NbdErrno =
  | typeof NBD_EPERM
  | typeof NBD_EIO
  | typeof NBD_ENOMEM
  | typeof NBD_EINVAL
  | typeof NBD_ENOSPC
  | typeof NBD_ESHUTDOWN;

const NAMES: Record<number, string> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

const BACKEND_ERRNOS = new Set<number>([
  NBD_EPERM,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_ESHUTDOWN,
]);

export function nbdErrnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}

/**
 * Base class: `errno` is what the client receives in the reply's error field. `code` is the name (`'EIO'`, ...),
 * like Node's system errors.
 */
export class NbdError extends Error {
  readonly errno: NbdErrno;
  readonly code: string;
  constructor(errno: NbdErrno, message?: string, options?: { cause?: unknown }) {
    super(message ?? nbdErrnoName(errno), options);
    this.name = 'NbdError';
    this.errno = errno;
    this.code = nbdErrnoName(errno);
  }
}

/** EIO: the device failed the I/O (also what any error that is not an NbdError becomes). */
export class NbdIoError extends NbdError {
  constructor(message?: string, options?: { cause?: unknown }) {
    super(NBD_EIO, message, options);
    this.name = 'NbdIoError';
  }
}

/** EINVAL: the request is invalid for this device (the server already checks bounds, alignment and sizes). */
export class NbdInvalidError extends NbdError {
  constructor(message?: string, options?: { cause?: unknown }) {
    super(NBD_EINVAL, message, options);
    this.name = 'NbdInvalidError';
  }
}

/** ENOSPC: no space left to store the write (e.g. a log device that cannot take it). */
export class NbdNoSpaceError extends NbdError {
  constructor(message?: string, options?: { cause?: unknown }) {
    super(NBD_ENOSPC, message, options);
    this.name = 'NbdNoSpaceError';
  }
}

/** EPERM: the operation is not permitted (e.g. a write to a device that became read-only). */
export class NbdPermissionError extends NbdError {
  constructor(message?: string, options?: { cause?: unknown }) {
    super(NBD_EPERM, message, options);
    this.name = 'NbdPermissionError';
  }
}

/** ESHUTDOWN: the device is going away; the client is expected to disconnect. */
export class NbdShutdownError extends NbdError {
  constructor(message?: string, options?: { cause?: unknown }) {
    super(NBD_ESHUTDOWN, message, options);
    this.name = 'NbdShutdownError';
  }
}

/**
 * The NBD error value for whatever a backend threw: an NbdError's own errno; Node's ENOSPC, EDQUOT and EFBIG (as the
 * protocol asks) become ENOSPC; anything else is EIO.
 */
export function nbdErrnoOf(err: unknown): NbdErrno {
  if (err instanceof NbdError && BACKEND_ERRNOS.has(err.errno)) return err.errno;
  if (err && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return NBD_ENOSPC;
  }
  return NBD_EIO;
}
