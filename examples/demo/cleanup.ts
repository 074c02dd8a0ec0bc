/**
 * Leaving nothing behind: the demo's temporary directory (the tokens) and its member host
 * processes (closing a group stops them and removes their socket directories) are removed
 * on a normal exit, on an error, and on Ctrl-C (SIGINT) or SIGTERM. Steps run newest first,
 * once, whoever asks first.
 */
import { rmSync } from 'node:fs';

/** Most time the cleanup steps get before the remaining member hosts are killed outright. */
const STEPS_LIMIT_MS = 10_000;

/** The demo's cleanup steps and the processes it started. */
export class Cleanup {
  readonly #steps: { readonly what: string; readonly run: () => Promise<unknown> }[] = [];
  readonly #hosts: (() => number | undefined)[] = [];
  /** Things being made now (a testbed, a group opening): the cleanup waits for them. */
  readonly #making = new Set<Promise<void>>();
  #dir: string | undefined;
  #running: Promise<void> | undefined;
  #signal: NodeJS.Signals | undefined;

  /** The signal that interrupted the demo, if one did. */
  get interrupted(): NodeJS.Signals | undefined {
    return this.#signal;
  }

  /** The temporary directory to remove last (it holds what the steps close). */
  directory(dir: string): void {
    this.#dir = dir;
  }

  /**
   * A member host process the demo started (through a group), by a function that reads its
   * pid (known once it is spawned): killed at the end if it is still alive.
   */
  host(pid: () => number | undefined): void {
    this.#hosts.push(pid);
  }

  /** Adds a step (close a group, remove a testbed); steps run in reverse order of adding. */
  add(what: string, run: () => Promise<unknown>): void {
    this.#steps.push({ what, run });
  }

  /**
   * Adopts something being made: once made, `close` becomes a step; if the cleanup has
   * begun by then (a Ctrl-C while a group opens), it is closed at once. The cleanup waits
   * for whatever is being made, so that nothing made during a Ctrl-C is left behind.
   * @returns `making`
   */
  adopt<T>(what: string, making: Promise<T>, close: (made: T) => Promise<unknown>): Promise<T> {
    const settled = making.then(
      async (made) => {
        if (this.#running === undefined) this.add(what, () => close(made));
        else await close(made).catch(() => undefined);
      },
      () => undefined,
    );
    this.#making.add(settled);
    void settled.finally(() => this.#making.delete(settled));
    return making;
  }

  /**
   * Runs every step (newest first), then kills any recorded member host still alive and
   * removes the directory. Never throws; a step that fails is reported and the rest run.
   * Calling it again returns the same promise.
   */
  run(report: (line: string) => void = () => undefined): Promise<void> {
    this.#running ??= this.#run(report);
    return this.#running;
  }

  async #run(report: (line: string) => void): Promise<void> {
    const steps = async (): Promise<void> => {
      await Promise.all(this.#making);
      for (const step of this.#steps.splice(0).reverse()) {
        await step.run().catch((error: unknown) => report(`cleanup: ${step.what} failed: ${(error as Error).message}`));
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        report(`cleanup: steps took longer than ${STEPS_LIMIT_MS} ms; killing the member hosts`);
        resolve();
      }, STEPS_LIMIT_MS);
    });
    await Promise.race([steps(), limit]);
    clearTimeout(timer);
    this.#final();
  }

  /** The part that cannot wait: kill what is left of our member hosts, remove the directory. */
  #final(): void {
    for (const pidOf of this.#hosts) {
      const pid = pidOf();
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already: the usual case
      }
    }
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true, maxRetries: 3 });
  }

  /**
   * On SIGINT or SIGTERM: `onSignal` (stop the load, say so), then the cleanup, then exit
   * with 128 + the signal's number. A second signal during the cleanup exits at once after
   * the part that cannot wait.
   */
  onSignals(onSignal: (signal: NodeJS.Signals) => void, report: (line: string) => void): void {
    const handler = (signal: NodeJS.Signals): void => {
      const code = signal === 'SIGINT' ? 130 : 143;
      if (this.#signal !== undefined) {
        this.#final();
        process.exit(code);
      }
      this.#signal = signal;
      onSignal(signal);
      void this.run(report).finally(() => process.exit(code));
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  }
}
