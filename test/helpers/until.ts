/**
 * Bounded polling for real processes and threads: waits until `condition` holds, checking
 * every `intervalMs`, and fails with `what` after `limitMs`. Never a fixed sleep.
 */
export async function until(condition: () => boolean | Promise<boolean>, what: string, limitMs = 15_000, intervalMs = 5): Promise<void> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
