/**
 * The progress display of a benchmark run. On a terminal: one bar at the bottom
 * (cli-progress) with the percentage, the elapsed time, an ETA and the family running, and
 * log lines printed above it. Anywhere else (CI, `| tee`, a file): plain lines only, a
 * progress line at each tenth of the plan, so a log stays readable and greppable.
 *
 * Units are the seconds the families plan (BenchFamily.plannedSeconds), so the bar moves
 * with measured time and the ETA means minutes left.
 */
import cliProgress from 'cli-progress';

/** What bench/run.ts drives. */
export interface Progress {
  /** Prints one line (above the bar on a terminal). */
  log(line: string): void;
  /** Names what runs now (shown on the bar). */
  phase(name: string): void;
  /** Moves on by `seconds` of the plan. */
  advance(seconds: number): void;
  /** Removes the bar (a terminal) and prints nothing more. Idempotent. */
  stop(): void;
}

/** `95 s`, `4 min 10 s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)} min${s % 60 === 0 ? '' : ` ${s % 60} s`}`;
}

/**
 * A progress display over `totalSeconds` of planned work.
 * @param out where to write; a bar only when it is a TTY
 * @param decorate dresses a plain progress line like the log's lines (e.g. a time stamp)
 */
export function createProgress(totalSeconds: number, out: NodeJS.WriteStream = process.stdout, decorate: (line: string) => string = (line) => line): Progress {
  const total = Math.max(1, totalSeconds);
  if (out.isTTY === true) return barProgress(total, out);
  const plain = plainProgress(total, (line) => out.write(`${decorate(line)}\n`), () => performance.now());
  // Log lines come already dressed: write them as they are.
  return { ...plain, log: (line) => out.write(`${line}\n`) };
}

function barProgress(total: number, out: NodeJS.WriteStream): Progress {
  const multi = new cliProgress.MultiBar(
    {
      stream: out,
      format: ' {bar} {percentage}% | {duration_formatted} elapsed, about {eta_formatted} left | {phase}',
      hideCursor: true,
      clearOnComplete: true,
      // Spread the ETA over many updates: measurements advance in steps of 1-4 s.
      etaBuffer: 40,
      fps: 4,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bar = multi.create(total, 0, { phase: 'starting' });
  let done = 0;
  let stopped = false;
  return {
    log(line) {
      if (stopped) out.write(`${line}\n`);
      else multi.log(`${line}\n`);
    },
    phase(name) {
      if (!stopped) bar.update({ phase: name });
    },
    advance(seconds) {
      if (stopped || !(seconds > 0)) return;
      done += seconds;
      // A plan is an estimate: never let the bar overflow, stretch it instead.
      if (done > total) {
        total = done * 1.05;
        bar.setTotal(total);
      }
      bar.update(done);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multi.stop();
    },
  };
}

/**
 * Plain lines: `progress 40 % (about 2 min 10 s left)` when the run crosses each tenth of
 * its plan, the estimate from the rate so far. Exported for tests.
 */
export function plainProgress(total: number, write: (line: string) => void, now: () => number): Progress {
  const started = now();
  let done = 0;
  let lastTenth = 0;
  let stopped = false;
  let current = '';
  return {
    log(line) {
      write(line);
    },
    phase(name) {
      current = name;
    },
    advance(seconds) {
      if (stopped || !(seconds > 0)) return;
      done = Math.min(total, done + seconds);
      const tenth = Math.floor((done / total) * 10);
      if (tenth <= lastTenth || tenth >= 10) return;
      lastTenth = tenth;
      const elapsed = (now() - started) / 1000;
      const left = (elapsed / done) * (total - done);
      write(`progress ${tenth * 10} % (about ${formatDuration(left)} left)${current === '' ? '' : `, ${current}`}`);
    },
    stop() {
      stopped = true;
    },
  };
}
