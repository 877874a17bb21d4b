// The foreground-task limit of a server (WalB's -fg): restores, full backups and received transfers
// each hold one slot while they run, so that too many at once are refused instead of slowing all of them down.
import { WalbError } from './errors';

export class ForegroundSlots {
  private used = 0;

  constructor(readonly max: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes a slot; FAILED_PRECONDITION when all are taken. Returns its release (a second call does nothing). */
  take(): () => void {
    if (this.used >= this.max)
      throw new WalbError('FAILED_PRECONDITION', `too many foreground tasks (${this.used} of ${this.max})`);
    this.used++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.used--;
    };
  }
}
