/**
 * The demo's output. On a terminal: story lines scroll, and a live status table stays
 * under them, redrawn in place. Elsewhere (a pipe, a file, a test): the same story lines,
 * and the status as one plain line now and then.
 */

/** ANSI colour codes, invisible on screen. */
const ANSI = /\x1b\[[0-9;]*m/g;

/** Where the demo writes. */
export class Screen {
  readonly #out: NodeJS.WriteStream;
  readonly #live: boolean;
  readonly #t0: number;
  /** Lines of the table on screen now (live mode). */
  #shown = 0;
  #table: readonly string[] = [];
  #muted = false;

  /**
   * @param out where to write (stdout)
   * @param plain plain lines even on a terminal
   */
  constructor(out: NodeJS.WriteStream, plain: boolean) {
    this.#out = out;
    this.#live = out.isTTY === true && !plain;
    this.#t0 = performance.now();
  }

  /** True when the table is redrawn in place. */
  get live(): boolean {
    return this.#live;
  }

  /** Seconds since the demo started. */
  now(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** A story line, stamped with the time. */
  log(line: string): void {
    if (!this.#muted) this.#write(`[${this.now().toFixed(2).padStart(6)} s] ${line}\n`);
  }

  /** A line about the demo itself (a signal, the cleanup): written even when muted. */
  notice(line: string): void {
    this.#write(`[${this.now().toFixed(2).padStart(6)} s] ${line}\n`);
  }

  /** A line as it is (headings, the summary). */
  print(line = ''): void {
    if (!this.#muted) this.#write(`${line}\n`);
  }

  /**
   * Ends the story's output (after Ctrl-C: what the interrupted story still says as it
   * unwinds is noise); the table is left as it was, and only notices are written.
   */
  mute(): void {
    this.endTable();
    this.#muted = true;
  }

  /** The live table (terminal), or nothing: in plain mode {@link Screen.statusLine} speaks. */
  table(lines: readonly string[]): void {
    if (!this.#live || this.#muted) return;
    this.#table = lines;
    this.#out.write(this.#erase() + this.#draw());
  }

  /** The status as one plain line (plain mode only). */
  statusLine(line: string): void {
    if (!this.#live) this.log(line);
  }

  /** Takes the table off the screen for good (before the summary). */
  endTable(): void {
    if (!this.#live || this.#muted) return;
    this.#out.write(this.#erase() + this.#draw());
    this.#shown = 0;
    this.#table = [];
  }

  #write(text: string): void {
    if (!this.#live) {
      this.#out.write(text);
      return;
    }
    // Lines go above the table: erase it, write, draw it again below.
    this.#out.write(this.#erase() + text + this.#draw());
  }

  #erase(): string {
    if (this.#shown === 0) return '';
    const up = `\x1b[${this.#shown}F\x1b[J`;
    this.#shown = 0;
    return up;
  }

  #draw(): string {
    // A line wider than the terminal would wrap, and the next erase would miss its rest.
    const width = Math.max(20, (this.#out.columns ?? 80) - 1);
    const fit = (line: string): string => {
      const plain = line.replace(ANSI, '');
      return plain.length > width ? plain.slice(0, width) : line;
    };
    this.#shown = this.#table.length;
    return this.#table.map((l) => `${fit(l)}\n`).join('');
  }
}
