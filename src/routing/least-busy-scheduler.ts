/**
 * Luna's least-busy round-robin: the candidate with the fewest outstanding commands (its
 * own, plus what its host reports for other application processes: `hostLoad`);
 * among equals, the next one in member order after the last pick. Under equal load this
 * is strict round-robin; a member stuck on a long command (a key-pair generation) is
 * passed over until it catches up.
 */
import type { Candidate, Scheduler } from './scheduler.js';

/** Least-busy with round-robin tie-breaking. Keeps one cursor; otherwise stateless. */
export class LeastBusyScheduler implements Scheduler {
  readonly name = 'least-busy';
  /** The member index the round-robin turn starts at. */
  #cursor = 0;

  pick<C extends Candidate>(candidates: readonly C[]): C | undefined {
    let best: C | undefined;
    let bestLoad = Infinity;
    let bestDistance = Infinity;
    for (const c of candidates) {
      const load = c.outstanding + (c.hostLoad ?? 0);
      // Distance from the cursor in member order decides ties: the next member in turn wins.
      const distance = c.index >= this.#cursor ? c.index - this.#cursor : c.index - this.#cursor + 1e9;
      if (best === undefined || load < bestLoad || (load === bestLoad && distance < bestDistance)) {
        best = c;
        bestLoad = load;
        bestDistance = distance;
      }
    }
    if (best !== undefined) this.#cursor = best.index + 1;
    return best;
  }
}
