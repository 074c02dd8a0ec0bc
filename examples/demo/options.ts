/**
 * The demo's command line: `npm run demo -- [--short] [--chart <file>] [--callers <n>] [--plain]`.
 * Unknown options and bad values end the demo with exit code 2 and a one-line reason.
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** What the command line chose. */
export interface DemoOptions {
  /** Short phases (about a second each) for tests and quick looks. */
  readonly short: boolean;
  /** Where the failover timeline chart (SVG) is written. */
  readonly chartPath: string;
  /** Concurrent callers of the mixed load, each on a session of its own (8; 4 when short). */
  readonly callers: number;
  /** Plain lines even on a terminal (no live table redrawn in place). */
  readonly plain: boolean;
  /** Seconds of load in each phase of the story. */
  readonly phaseSeconds: number;
}

/** The demo's usage line, printed on a bad option. */
export const USAGE = 'usage: npm run demo -- [--short] [--chart <file.svg>] [--callers <n>] [--plain]';

/** A bad command line: the demo prints the message and exits with 2. */
export class UsageError extends Error {}

/**
 * Parses the command line.
 * @throws {@link UsageError} for an unknown option or a bad value
 */
export function parseDemoOptions(argv: readonly string[]): DemoOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        short: { type: 'boolean', default: false },
        chart: { type: 'string' },
        callers: { type: 'string' },
        plain: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n${USAGE}`);
  }
  const short = values.short === true;
  const callers = values.callers === undefined ? (short ? 4 : 8) : Number(values.callers);
  if (!Number.isInteger(callers) || callers < 1 || callers > 64) {
    throw new UsageError(`--callers must be an integer from 1 to 64, got ${JSON.stringify(values.callers)}\n${USAGE}`);
  }
  if (values.chart !== undefined && !values.chart.endsWith('.svg')) {
    throw new UsageError(`--chart must name an .svg file, got ${JSON.stringify(values.chart)}\n${USAGE}`);
  }
  return {
    short,
    chartPath: values.chart !== undefined ? resolve(values.chart) : join(tmpdir(), 'pkcs11-ha-demo-timeline.svg'),
    callers,
    plain: values.plain === true,
    phaseSeconds: short ? 1 : 3,
  };
}
