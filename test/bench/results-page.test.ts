/**
 * bench/RESULTS.md and the results file: targets judged from the entries, ids not produced
 * yet said to be "not measured yet", every chart the page references made and valid, and
 * the results shape of BENCH-FORMAT.md checked (on samples and on the committed file).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { BenchResult } from '../../bench/harness.js';
import { checkBenchFile, type BenchFile } from '../../bench/report.js';
import { charts, judge, PENDING, renderResultsPage, TARGETS } from '../../bench/results-page.js';
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
const lat = { p50Ms: 0.6, p99Ms: 2.5, baselineP50Ms: 0.03, baselineP99Ms: 0.09 };

/** A run with every family the bench produces today. */
const sample: BenchFile = {
  date: '2026-11-23T14:18:05Z',
  machine,
  quick: false,
  results: [
    ...['aes-gcm-1k', 'hmac-sha256-1k', 'ecdsa-p256-sign', 'rsa2048-sign', 'ec-p256-keygen'].flatMap((op) =>
      [1, 16, 64].map((k) => r(`overhead/${op}/c${k}`, 'ops/s', op === 'ecdsa-p256-sign' && k === 16 ? 15000 : 3896 * k ** 0.5, 13298, lat)),
    ),
    r('overhead/rsa2048-sign/c16/threads4', 'ops/s', 2300, 2349),
    r('keygen/ec-p256/members1', 'ms', 24.29, 24.29),
    r('keygen/ec-p256/members3', 'ms', 38.17, 24.29),
    r('keygen/rsa2048/members3', 'ms', 222.49, 206.15),
    r('limit/rsa2048-sign/baseline', 'ops/s', 4100, 2100, { ...lat, processes: 2, perProcess: [2050, 2050] }),
    r('limit/aes-gcm-1k/baseline', 'ops/s', 80000, 50000, { processes: 2, perProcess: [40000, 40000] }),
    { id: 'soak/rss-growth', unit: '%', value: 1.5, baseline: 100, ratio: 0.015, firstQuarterMiB: 240, lastQuarterMiB: 243.6, durationS: 121, operations: 2_500_000, errors: 0, quickSoak: false, rssMiB: [240, 241, 243, 243.5] },
  ],
};

describe('targets', () => {
  it.each([
    ['overhead/ecdsa-p256-sign/c16', 'missed', 1.128],
    ['keygen/ec-p256/members3', 'missed', 1.571],
    ['keygen/rsa2048/members3', 'met', 1.079],
    ['soak/rss-growth', 'met', 1.5],
    ['limit/rsa2048-sign/hosts2', 'not measured yet', undefined],
    ['emulated/members16', 'not measured yet', undefined],
  ])('%s is %s', (id, status, figure) => {
    const j = judge(TARGETS.find((t) => t.id === id)!, sample.results);
    expect(j.status).toBe(status);
    expect(j.figure).toBe(figure);
  });

  it('a quick soak is not judged', () => {
    const quick = sample.results.map((e) => (e.id === 'soak/rss-growth' ? { ...e, quickSoak: true } : e));
    expect(judge(TARGETS.find((t) => t.id === 'soak/rss-growth')!, quick).status).toBe('not judged (quick soak)');
  });

  it('lists every target of issue 5', () => {
    const ids = TARGETS.filter((t) => t.source === 'issue 5').map((t) => t.id);
    expect(ids).toEqual(expect.arrayContaining(['overhead/ecdsa-p256-sign/c16', 'overhead/rsa2048-sign/c16', 'overhead/aes-gcm-1k/c16', 'overhead/hmac-sha256-1k/c16', 'limit/rsa2048-sign/hosts2', 'emulated/members1', 'emulated/members16', 'soak/rss-growth']));
  });
});

describe('RESULTS.md', () => {
  const { markdown, charts: made } = renderResultsPage(sample, { notes: [{ id: 'overhead/aes-gcm-1k/c16', note: 'baseline sync' }], settings: '3 x 3 s' });

  it('says which targets are met, with the figures', () => {
    expect(markdown).toMatch(/\| `overhead\/ecdsa-p256-sign\/c16` \| ratio >= 1.3 \| 1.128 \| \*\*missed\*\* \| issue 5 \|/);
    expect(markdown).toMatch(/\| `soak\/rss-growth` \| growth % < 5 \| 1.50 \| \*\*met\*\* \| issue 5 \|/);
    expect(markdown).toMatch(/\| `limit\/rsa2048-sign\/hosts2` \| ratio >= 0.85 \| – \| not measured yet \|/);
  });

  it('says "not measured yet" for every id family not produced yet', () => {
    for (const p of PENDING) expect(markdown).toContain(`| \`${p.pattern}\` | not measured yet |`);
    for (const id of ['emulated/members1', 'emulated/members2', 'emulated/members4', 'emulated/members8', 'emulated/members16']) expect(markdown).toMatch(new RegExp(`\`${id}\` \\| ratio >= 0.95 \\| – \\| not measured yet`));
  });

  it('references every chart it makes, and each is valid SVG carrying its data', () => {
    expect(made.map((c) => c.file).sort()).toEqual(['keygen-members.svg', 'latency-percentiles.svg', 'machine-limit.svg', 'overhead-ratio.svg', 'soak-rss.svg', 'throughput-concurrency.svg']);
    for (const c of made) {
      expect(markdown).toContain(`](charts/${c.file})`);
      expect(checkSvg(c.svg).problems, c.file).toEqual([]);
    }
    const ratio = checkSvg(made.find((c) => c.file === 'overhead-ratio.svg')!.svg).texts;
    for (const t of ['aes-gcm-1k', 'ecdsa-p256-sign', 'ec-p256-keygen', '1.13', '1 caller', '16 callers', '64 callers']) expect(ratio).toContain(t);
    const limit = checkSvg(made.find((c) => c.file === 'machine-limit.svg')!.svg).texts;
    expect(limit).toContain('0.51'); // one process: 2100 / 4100 of the limit
  });

  it('carries the run, the settings, the notes and a row per overhead cell', () => {
    expect(markdown).toContain('Run of 2026-11-23T14:18:05Z — full mode');
    expect(markdown).toContain('Settings: 3 x 3 s.');
    expect(markdown).toContain('baseline sync');
    expect(markdown.match(/^\| (aes-gcm-1k|hmac-sha256-1k|ecdsa-p256-sign|rsa2048-sign|ec-p256-keygen) \| (1|16|64) \|/gm)).toHaveLength(15);
  });

  it('a quick run says so, and a run without some family says it was not measured', () => {
    const quick: BenchFile = { ...sample, quick: true, results: sample.results.filter((e) => e.id.startsWith('overhead/')) };
    const page = renderResultsPage(quick);
    expect(page.markdown).toContain('**quick mode**');
    expect(page.markdown).toMatch(/## The machine's limit\n\nNot measured in this run\./);
    expect(page.markdown).toMatch(/## Soak\n\nNot measured in this run\./);
    expect(page.charts.map((c) => c.file)).not.toContain('soak-rss.svg');
    expect(charts(quick).has('limit')).toBe(false);
  });

  it('a limit/<op>/hosts<n> entry added later appears in the limit chart with its target', () => {
    const later: BenchFile = { ...sample, results: [...sample.results, r('limit/rsa2048-sign/hosts2', 'ops/s', 3690, 4100)] };
    const svg = charts(later).get('limit')!.svg;
    expect(checkSvg(svg).texts).toContain('virtual slot, hosts2');
    expect(svg).toContain('target 0.85');
    expect(renderResultsPage(later).markdown).toMatch(/\| `limit\/rsa2048-sign\/hosts2` \| ratio >= 0.85 \| 0.900 \| \*\*met\*\*/);
  });
});

describe('the results shape (BENCH-FORMAT.md)', () => {
  it('accepts a well-formed file with extra fields in entries', () => {
    expect(checkBenchFile(JSON.parse(JSON.stringify(sample)))).toEqual([]);
  });

  it.each([
    ['a date with milliseconds', { ...sample, date: '2026-11-23T14:18:05.123Z' }, /date/],
    ['no machine', { ...sample, machine: undefined }, /machine must be an object/],
    ['quick as a string', { ...sample, quick: 'yes' }, /quick must be a boolean/],
    ['a ratio that is not value / baseline', { ...sample, results: [r('a/b', 'ops/s', 10, 20), { ...r('a/c', 'ops/s', 10, 20), ratio: 0.7 }] }, /ratio 0.7 is not value \/ baseline/],
    ['an unknown unit', { ...sample, results: [{ ...r('a/b', 'ops/s', 1, 1), unit: 'ops' }] }, /unit must be/],
    ['a duplicate id', { ...sample, results: [r('a/b', 'ms', 1, 1), r('a/b', 'ms', 2, 1)] }, /duplicate id/],
    ['a null value (NaN in JSON)', { ...sample, results: [{ ...r('a/b', 'ms', 1, 1), value: null }] }, /value must be a finite number/],
  ])('rejects %s', (_, file, problem) => {
    expect(checkBenchFile(JSON.parse(JSON.stringify(file))).join('\n')).toMatch(problem);
  });

  it('the committed bench/results/latest.json has the shape', () => {
    const file: unknown = JSON.parse(readFileSync(new URL('../../bench/results/latest.json', import.meta.url), 'utf8'));
    expect(checkBenchFile(file)).toEqual([]);
  });
});
