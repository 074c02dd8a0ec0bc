/**
 * RESULTS.md for the families over member hosts: the machine's limit with hosts2, the
 * EMULATION scaling, the scheduler comparison with its recommendation, and failover with
 * its timelines; targets of issues 4 and 5 judged from the entries. Made-up entries in the
 * shape the families write; nothing is measured.
 */
import { describe, expect, it } from 'vitest';
import type { BenchResult } from '../../bench/harness.js';
import type { BenchFile } from '../../bench/report.js';
import { charts, failoverChart, judge, renderResultsPage, schedulerVerdict, TARGETS } from '../../bench/results-page.js';
import { checkSvg } from './svg-check.js';

const machine = { cpus: 2, cpuModel: 'AMD EPYC', node: 'v20.20.2', softhsm: '2.6.1' };
const r = (id: string, unit: BenchResult['unit'], value: number, baseline: number, extra: Record<string, unknown> = {}): BenchResult => ({
  id,
  unit,
  value,
  baseline,
  ratio: Math.round((value / baseline) * 1000) / 1000,
  ...extra,
});

const failoverEntry = (fault: 'kill' | 'hang', over: Record<string, unknown> = {}, value = 300): BenchResult =>
  r(`failover/${fault}`, 'ms', value, 1000, {
    errors: 0,
    recovered: true,
    operations: 40000,
    members: 3,
    callers: 16,
    victim: 'fo-2',
    preFaultRate: 9000,
    threshold: 6000,
    dipRate: 4000,
    detectedAfterMs: fault === 'kill' ? 3 : 502,
    memberRecoveredAfterMs: 1200,
    deadlineMs: 500,
    heartbeatIntervalMs: 100,
    recoveryIntervalMs: 200,
    bucketMs: 100,
    rates: [...Array.from({ length: 15 }, () => 9000), 4000, 5000, 8000, 9000, 9000, ...Array.from({ length: 20 }, () => 9000)],
    faultAtS: 1.5,
    detectedAtS: fault === 'kill' ? 1.503 : 2.002,
    recoveredAtS: 2.7,
    ...over,
  });

const hetero = (peakP99: number, equal: { ratio: number; p99Ratio: number; dev: number }): BenchResult[] => [
  r('hetero/least-busy/p99', 'ms', 100, 100, { callers: 12, rate: 400, baselineRate: 400, p50Ms: 20, shares: [0.45, 0.45, 0.1], maxShareDeviation: 0.233 }),
  r('hetero/peak-ewma/p99', 'ms', peakP99, 100, { rate: 390, baselineRate: 400, p50Ms: 20, shares: [0.49, 0.49, 0.02], maxShareDeviation: 0.313 }),
  r('hetero/least-busy/equal-load', 'ops/s', 580, 580, { p50Ms: 20, p99Ms: 25, baselineP99Ms: 25, p99Ratio: 1, shares: [0.333, 0.333, 0.334], maxShareDeviation: 0.001 }),
  r('hetero/peak-ewma/equal-load', 'ops/s', 580 * equal.ratio, 580, {
    p50Ms: 20,
    p99Ms: 25 * equal.p99Ratio,
    baselineP99Ms: 25,
    p99Ratio: equal.p99Ratio,
    shares: [1 / 3 + equal.dev, 1 / 3, 1 / 3 - equal.dev],
    maxShareDeviation: equal.dev,
  }),
];

const emulated = [1, 2, 4, 8, 16].map((n) =>
  r(`emulated/members${n}`, 'ops/s', 199 * n * (n === 16 ? 0.94 : 0.99), 199 * n, { emulation: true, members: n, engines: 4, serviceTimeMs: 20, callers: 8 * n, p50Ms: 40, p99Ms: 44, oneMemberRate: 199 }),
);

const file: BenchFile = {
  date: '2026-11-23T16:00:00Z',
  machine,
  quick: true,
  results: [
    r('limit/rsa2048-sign/baseline', 'ops/s', 2400, 1250, { processes: 2, perProcess: [1200, 1200] }),
    r('limit/rsa2048-sign/hosts2', 'ops/s', 2000, 2400, { members: 2, callers: 16, processes: 2, p50Ms: 7, p99Ms: 20 }),
    ...emulated,
    ...hetero(60, { ratio: 0.99, p99Ratio: 1.05, dev: 0.01 }),
    failoverEntry('kill'),
    failoverEntry('hang', { errors: 2 }, 700),
  ],
};

describe('targets of issues 4 and 5 over member hosts', () => {
  const status = (id: string, field?: string): string | undefined => {
    const t = TARGETS.find((x) => x.id === id && x.field === field);
    return t === undefined ? undefined : judge(t, file.results).status;
  };

  it('judges hosts2, every emulated size, failover time and errors, and the scheduler rules', () => {
    expect(status('limit/rsa2048-sign/hosts2')).toBe('missed'); // 0.833 < 0.85
    expect(status('emulated/members8')).toBe('met');
    expect(status('emulated/members16')).toBe('missed'); // 0.94
    expect(status('failover/kill')).toBe('met'); // 300 ms <= 1000
    expect(status('failover/kill', 'errors')).toBe('met');
    expect(status('failover/hang', 'errors')).toBe('missed'); // 2 errors
    expect(status('hetero/peak-ewma/p99')).toBe('met'); // 0.6 < 0.9
    expect(status('hetero/peak-ewma/equal-load')).toBe('met');
    expect(status('hetero/peak-ewma/equal-load', 'p99Ratio')).toBe('met');
    expect(status('hetero/peak-ewma/equal-load', 'maxShareDeviation')).toBe('met');
  });

  it('a kill that never came back within 1 s, or a missing field, is missed', () => {
    const slow = [failoverEntry('kill', {}, 1400)];
    expect(judge(TARGETS.find((t) => t.id === 'failover/kill' && t.on === 'value')!, slow).status).toBe('missed');
    const noErrors = [r('failover/kill', 'ms', 100, 1000)];
    expect(judge(TARGETS.find((t) => t.id === 'failover/kill' && t.field === 'errors')!, noErrors).status).toBe('missed');
  });

  it('the targets table names each figure and shows counts and ms as whole numbers', () => {
    const { markdown } = renderResultsPage(file);
    expect(markdown).toContain('| `failover/kill` | ms back to 2/3 <= 1000 | 300 | **met** | issue 4 |');
    expect(markdown).toContain('| `failover/hang` | errors == 0 | 2 | **missed** | issue 4 |');
    expect(markdown).toContain('| `hetero/peak-ewma/equal-load` | largest share - 1/3 <= 0.05 | 0.010 | **met** | issue 5 |');
    expect(markdown).toContain('| `limit/rsa2048-sign/hosts2` | ratio >= 0.85 | 0.833 | **missed** | issue 5 |');
  });
});

describe('the scheduler recommendation (issue 5)', () => {
  it('recommends peak-EWMA only when it is clearly better on p99 AND keeps the reference behaviour under equal load', () => {
    expect(schedulerVerdict(hetero(60, { ratio: 0.99, p99Ratio: 1.05, dev: 0.01 }))).toMatchObject({ better: 'peak-ewma', keepsReference: true, recommended: 'peak-ewma' });
    expect(schedulerVerdict(hetero(60, { ratio: 0.9, p99Ratio: 1.05, dev: 0.01 }))).toMatchObject({ better: 'peak-ewma', keepsReference: false, recommended: 'least-busy' });
    expect(schedulerVerdict(hetero(60, { ratio: 1, p99Ratio: 1.5, dev: 0.01 }))).toMatchObject({ keepsReference: false, recommended: 'least-busy' });
    expect(schedulerVerdict(hetero(60, { ratio: 1, p99Ratio: 1, dev: 0.08 }))).toMatchObject({ keepsReference: false, recommended: 'least-busy' });
    expect(schedulerVerdict(hetero(97, { ratio: 1, p99Ratio: 1, dev: 0 }))).toMatchObject({ better: 'neither', recommended: 'least-busy' });
    expect(schedulerVerdict(hetero(130, { ratio: 1, p99Ratio: 1, dev: 0 }))).toMatchObject({ better: 'least-busy', recommended: 'least-busy' });
  });

  it('makes no recommendation without both peak-EWMA entries', () => {
    expect(schedulerVerdict(hetero(60, { ratio: 1, p99Ratio: 1, dev: 0 }).slice(0, 2))).toBeUndefined();
  });

  it('the page says what the run shows and that the library default is not changed', () => {
    const { markdown } = renderResultsPage(file);
    expect(markdown).toContain('So this run recommends **peak-ewma** as the default');
    expect(markdown).toContain("`scheduler: 'least-busy'` stays the default until someone decides otherwise");
  });
});

describe('RESULTS.md sections and charts over member hosts', () => {
  const { markdown, charts: made } = renderResultsPage(file);

  it('says the failover and scheduler settings from the entries', () => {
    expect(markdown).toContain("3 member hosts (`transport: 'host'`, deadline 500 ms, heartbeat 100 ms, recovery every 200 ms) under a steady load of 16 callers");
    expect(markdown).toContain('closed-loop load (12 callers, as many as the pool');
    expect(markdown).not.toContain('NaN');
  });

  it('labels the emulated families as EMULATION, and nothing is "not measured yet" any more', () => {
    expect(markdown).toContain('## Emulated device capacity (EMULATION)');
    expect(markdown).toContain('**EMULATION, not real devices.**');
    expect(markdown).toContain('## Schedulers: one slow member (EMULATION)');
    expect(markdown).not.toContain('## Not measured yet');
    expect(markdown).toMatch(/^\| 16 \| 2,993 ops\/s \| 3,184 ops\/s \| 0\.940 \| 128 \|/m);
  });

  it('makes the scaling, scheduler and both failover charts, references them, and each is valid', () => {
    for (const f of ['emulated-scaling.svg', 'hetero-p99.svg', 'failover-kill.svg', 'failover-hang.svg', 'machine-limit.svg']) {
      const c = made.find((x) => x.file === f);
      expect(c, f).toBeDefined();
      expect(markdown).toContain(`](charts/${f})`);
      expect(checkSvg(c!.svg).problems, f).toEqual([]);
    }
    const scaling = checkSvg(made.find((c) => c.file === 'emulated-scaling.svg')!.svg).texts;
    for (const t of ['EMULATION: throughput against emulated members', 'ideal: n × one member', 'virtual slot', '16', '0.94', 'target 0.95']) expect(scaling).toContain(t);
    const sched = checkSvg(made.find((c) => c.file === 'hetero-p99.svg')!.svg).texts;
    for (const t of ['least-busy', 'peak-ewma', 'one member 5x slower', 'equal members', '60.0', '100.0']) expect(sched).toContain(t);
  });

  it('the failover chart shows the timeline, the reference lines and the fault, detection, back-to-2/3 and recovery marks', () => {
    const svg = failoverChart(failoverEntry('kill'), 'kill', 'a run');
    const { problems, texts } = checkSvg(svg);
    expect(problems).toEqual([]);
    for (const t of [
      'Failover, SIGKILL of 1 of 3 member hosts: back to 2/3 in 300 ms, 0 errors',
      'SIGKILL of one host',
      'member failed (+3 ms)',
      'back to 2/3 (+300 ms)',
      'member recovered (+1200 ms)',
      'before the fault 9.00k/s',
      '2/3 of it',
    ])
      expect(texts).toContain(t);
    expect([...svg.matchAll(/<polyline /g)]).toHaveLength(1);
  });

  it('a failover that never came back says so, with no back-to-2/3 mark', () => {
    const svg = failoverChart(failoverEntry('hang', { recovered: false, recoveredAtS: null, memberRecoveredAfterMs: null }, 10000), 'hang', 'a run');
    const { problems, texts } = checkSvg(svg);
    expect(problems).toEqual([]);
    expect(texts).toContain('Failover, SIGSTOP of 1 of 3 member hosts: NOT back to 2/3 in 10.0 s, 0 errors');
    expect(texts.some((t) => t.startsWith('back to 2/3'))).toBe(false);
    expect(texts.some((t) => t.startsWith('member recovered'))).toBe(false);
  });

  it('no failover chart without a timeline, and the table row says when throughput never came back', () => {
    const bare: BenchFile = { ...file, results: [r('failover/kill', 'ms', 10000, 1000, { errors: 0, recovered: false })] };
    expect(charts(bare).has('failover-kill')).toBe(false);
    expect(renderResultsPage(bare).markdown).toContain('not back (10000 ms observed)');
  });
});
