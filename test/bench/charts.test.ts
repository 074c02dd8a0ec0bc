/**
 * The SVG charts: valid SVG documents that carry their data (labels, values, series
 * names), whatever the data, with text escaped. No browser: a well-formedness check.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { barChart, escapeXml, formatValue, labelRows, lineChart, niceTicks, panels } from '../../bench/charts.js';
import { checkSvg } from './svg-check.js';

describe('bar chart', () => {
  const svg = barChart({
    title: 'Ratios <by> "op" & concurrency',
    subtitle: 'higher is better',
    yLabel: 'ratio',
    series: [{ name: '1 caller' }, { name: '16 callers' }],
    groups: [
      { label: 'aes-gcm-1k', bars: [{ series: '1 caller', value: 0.13 }, { series: '16 callers', value: 0.69, target: 0.9 }] },
      { label: 'rsa2048-sign', bars: [{ series: '1 caller', value: 0.66, label: 'sixty-six' }, { series: '16 callers', value: Number.NaN }] },
    ],
    refLines: [{ value: 1, label: '1.0 = direct' }],
    format: (v) => v.toFixed(2),
  });

  it('is well-formed SVG', () => {
    expect(checkSvg(svg).problems).toEqual([]);
  });

  it('shows the title (escaped), groups, series, values, custom labels and the reference line', () => {
    const { texts } = checkSvg(svg);
    for (const t of ['Ratios <by> "op" & concurrency', 'aes-gcm-1k', 'rsa2048-sign', '1 caller', '16 callers', '0.13', '0.69', 'sixty-six', '1.0 = direct']) expect(texts).toContain(t);
    expect(svg).toContain('Ratios &lt;by&gt; &quot;op&quot; &amp; concurrency');
  });

  it('draws one bar per measured value (NaN: none) and a tick for a target', () => {
    const bars = [...svg.matchAll(/<rect [^>]*><title>/g)];
    expect(bars).toHaveLength(3);
    expect(svg).toContain('target 0.90');
  });

  it('stays valid for any values, labels and group counts', () => {
    const text = fc.string({ maxLength: 12 });
    fc.assert(
      fc.property(
        fc.array(fc.record({ label: text, values: fc.array(fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.constant(Number.NaN)), { minLength: 3, maxLength: 3 }) }), { minLength: 0, maxLength: 8 }),
        fc.array(text, { minLength: 3, maxLength: 3 }),
        (groups, names) => {
          const series = names.map((name, i) => ({ name: `${i}${name}` }));
          const out = barChart({ title: 't', yLabel: 'y', series, groups: groups.map((g) => ({ label: g.label, bars: g.values.map((value, i) => ({ series: series[i]!.name, value })) })) });
          expect(checkSvg(out).problems).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('line chart and panels', () => {
  it('a line chart over categories is valid and labels its points', () => {
    const svg = lineChart({
      title: 'Throughput',
      xLabel: 'callers',
      yLabel: 'ops/s',
      categories: ['1', '16', '64'],
      labelPoints: true,
      series: [
        { name: 'virtual slot', points: [{ x: 0, y: 3896 }, { x: 1, y: 20628 }, { x: 2, y: Number.NaN }] },
        { name: 'pkcs11js directly', points: [{ x: 0, y: 29997 }, { x: 1, y: 29997 }, { x: 2, y: 31000 }] },
      ],
      refLines: [{ value: 25000, label: 'a line' }],
    });
    const { problems, texts } = checkSvg(svg);
    expect(problems).toEqual([]);
    for (const t of ['Throughput', 'callers', '1', '16', '64', 'virtual slot', 'pkcs11js directly', '3.90k', '20.6k', '31.0k', 'a line']) expect(texts).toContain(t);
    expect([...svg.matchAll(/<polyline /g)]).toHaveLength(2);
  });

  it('a numeric line chart not from zero, with vertical markers, is valid', () => {
    const svg = lineChart({
      title: 'RSS',
      xLabel: 'seconds',
      yLabel: 'MiB',
      yFromZero: false,
      series: [{ name: 'RSS', points: Array.from({ length: 60 }, (_, i) => ({ x: i * 2, y: 240 + Math.sin(i) })) }],
      xMarkers: [{ x: 30, label: 'first quarter ends' }],
    });
    const { problems, texts } = checkSvg(svg);
    expect(problems).toEqual([]);
    expect(texts).toContain('first quarter ends');
  });

  it('panels nest one chart per panel in one valid document', () => {
    const svg = panels('Latency', 'ms', [
      { kind: 'bar', title: 'aes', yLabel: 'ms', series: [{ name: 'p50' }], groups: [{ label: 'c1', bars: [{ series: 'p50', value: 0.25 }] }] },
      { kind: 'line', title: 'rsa', xLabel: 'x', yLabel: 'ms', series: [{ name: 'p99', points: [{ x: 1, y: 30 }] }] },
    ]);
    const { problems, tags, texts } = checkSvg(svg);
    expect(problems).toEqual([]);
    expect(tags.filter((t) => t === 'svg')).toHaveLength(3);
    for (const t of ['Latency', 'aes', 'rsa', '0.25']) expect(texts).toContain(t);
  });

  it('an empty chart is still a valid document', () => {
    expect(checkSvg(lineChart({ title: 'none', xLabel: 'x', yLabel: 'y', series: [] })).problems).toEqual([]);
    expect(checkSvg(barChart({ title: 'none', yLabel: 'y', series: [], groups: [] })).problems).toEqual([]);
  });
});

describe('helpers', () => {
  it('escapes the five XML specials', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
  });

  it.each([
    [123456, '123k'],
    [20628, '20.6k'],
    [2193, '2.19k'],
    [957.4, '957'],
    [13.93, '13.9'],
    [1.085, '1.08'],
    [0.0345, '0.035'],
    [0, '0'],
    [Number.NaN, '–'],
  ])('formatValue(%f) = %s', (v, s) => expect(formatValue(v)).toBe(s));

  it.each([
    [1e-12, 0.001 + 1e-12],
    [4630.226248662002, 4670.000004670],
  ])('niceTicks(%f, %f) reach a max just above a round value (adding steps up stopped one short)', (lo, hi) => {
    const ticks = niceTicks(lo, hi);
    const step = ticks[1]! - ticks[0]!;
    expect(ticks[ticks.length - 1]!).toBeGreaterThanOrEqual(hi);
    expect(ticks[ticks.length - 2]!).toBeLessThan(hi);
    expect(ticks[0]!).toBeLessThanOrEqual(lo);
    expect(step).toBeGreaterThan(0);
  });

  it('niceTicks cover the range in steps of 1, 2 or 5 times a power of ten', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.double({ min: 1e-3, max: 1e6, noNaN: true }), (lo, width) => {
        const hi = lo + width;
        const ticks = niceTicks(lo, hi);
        const slack = 1e-9 * Math.max(Math.abs(lo), Math.abs(hi), width); // floating-point rounding only
        expect(ticks[0]!).toBeLessThanOrEqual(lo + slack);
        expect(ticks[ticks.length - 1]!).toBeGreaterThanOrEqual(hi - slack);
        expect(ticks.length).toBeLessThanOrEqual(12);
        const step = ticks[1]! - ticks[0]!;
        const mantissa = step / 10 ** Math.floor(Math.log10(step));
        expect([1, 2, 5, 10].some((m) => Math.abs(mantissa - m) < 1e-6)).toBe(true);
      }),
    );
  });
});

describe('x markers', () => {
  it('labelRows puts a label on the first row where it does not overlap an earlier one', () => {
    expect(labelRows([10, 200, 400], [50, 50, 50])).toEqual([0, 0, 0]);
    // A kill, its detection 2 px later and a recovery far away.
    expect(labelRows([100, 102, 104, 600], [90, 120, 80, 100])).toEqual([0, 1, 2, 0]);
    expect(labelRows([], [])).toEqual([]);
  });

  it('markers close together get their labels on separate rows, in their colours, and a label near the right edge goes left of its line', () => {
    const svg = lineChart({
      title: 'Failover',
      xLabel: 's',
      yLabel: 'ops/s',
      series: [{ name: 'throughput', points: Array.from({ length: 50 }, (_, i) => ({ x: i / 10, y: 1000 })) }],
      xMarkers: [
        { x: 1.5, label: 'SIGKILL', color: '#c0392b' },
        { x: 1.503, label: 'member failed', color: '#e67e22' },
        { x: 4.9, label: 'member recovered (+3400 ms)' },
      ],
      width: 600,
    });
    expect(checkSvg(svg).problems).toEqual([]);
    const labels = [...svg.matchAll(/<text x="([\d.]+)" y="([\d.]+)"( text-anchor="end")? font-size="10" fill="([^"]+)">([^<]+)<\/text>/g)].filter((m) => ['SIGKILL', 'member failed', 'member recovered (+3400 ms)'].includes(m[5]!));
    expect(labels).toHaveLength(3);
    const [kill, failed, recovered] = labels;
    expect(kill![2]).not.toBe(failed![2]); // different rows
    expect(kill![4]).toBe('#c0392b');
    expect(failed![4]).toBe('#e67e22');
    expect(recovered![3]).toBe(' text-anchor="end"');
  });
});
