// Volume names, the same on every role: they name directories, so only a safe alphabet is allowed.
import { WalbError } from './errors';

const VOLUME_RE = /^[0-9A-Za-z-]{1,64}$/;

export function checkVolumeName(vol: string): void {
  if (!VOLUME_RE.test(vol))
    throw new WalbError('INVALID_ARGUMENT', `bad volume name '${vol}' (1-64 of 0-9 A-Z a-z -)`);
}
