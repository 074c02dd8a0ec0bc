/**
 * What the demo records as it runs, for the chart: samples of throughput and member
 * states, and the moments that tell the story (a kill, a promotion, a recovery).
 */

/** How a member stood at a sample, as the chart colours it. */
export type LaneState = 'active' | 'standby' | 'promoted' | 'failed' | 'recovering' | 'removed';

/** One sample: times in seconds since the demo started. */
export interface Sample {
  readonly t: number;
  /** Load operations that checked out per second, since the previous sample. */
  readonly opsPerSecond: number;
  /** Load operations failed so far. */
  readonly failed: number;
  /** PKCS#11 calls each member answered per second, since the previous sample. */
  readonly served: Readonly<Record<string, number>>;
  readonly states: Readonly<Record<string, LaneState>>;
}

/** A moment of the story. */
export interface Mark {
  readonly t: number;
  readonly label: string;
  /** `fault`: something broke or was broken; `recovery`: came back; `keys`: keys changed. */
  readonly kind: 'fault' | 'recovery' | 'keys' | 'phase';
}

/** The recording. */
export class Timeline {
  readonly members: readonly string[];
  readonly samples: Sample[] = [];
  readonly marks: Mark[] = [];

  constructor(members: readonly string[]) {
    this.members = members;
  }

  /** Records a moment. */
  mark(t: number, label: string, kind: Mark['kind']): void {
    this.marks.push({ t, label, kind });
  }

  /** Records a sample. */
  sample(sample: Sample): void {
    this.samples.push(sample);
  }
}
