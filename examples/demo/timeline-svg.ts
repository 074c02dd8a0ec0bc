/**
 * The failover timeline as a self-contained SVG document (no dependency, no script, no
 * external font): above, the load's operations per second and each member's calls per
 * second; below, one lane per member coloured by its state; dashed lines at the moments of
 * the story. Pure function from a {@link Timeline} to text.
 */
import type { LaneState, Timeline } from './timeline.js';

/** Colour-blind-safe palette (Tableau 10), one colour per member. */
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f'] as const;

const STATE_COLORS: Readonly<Record<LaneState, string>> = {
  active: '#59a14f',
  standby: '#bab0ac',
  promoted: '#f28e2b',
  recovering: '#edc948',
  failed: '#e15759',
  removed: '#eeeeee',
};

const MARK_COLORS = { fault: '#c0392b', recovery: '#2e7d32', keys: '#4e79a7', phase: '#888888' } as const;

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** Escapes text for SVG content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A number for an attribute: at most 1 decimal, never NaN. */
function n(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 10) / 10) : '0';
}

/** A round step (1, 2 or 5 times a power of ten) giving about `count` steps over `span`. */
function step(span: number, count: number): number {
  const raw = (span > 0 && Number.isFinite(span) ? span : 1) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
}

/** Round ticks from 0 up to the first at or above `max`. */
function ticks(max: number, count: number): number[] {
  const s = step(max, count);
  const out: number[] = [];
  for (let k = 0; k <= Math.max(1, Math.ceil(max / s - 1e-9)); k++) out.push(k * s);
  return out;
}

function short(value: number): string {
  return value >= 1000 ? `${Number((value / 1000).toPrecision(3))}k` : String(Number(value.toPrecision(3)));
}

/**
 * Renders the timeline.
 * @param title the chart's title
 * @param subtitle a line under it (what ran, the verdict)
 */
export function timelineSvg(timeline: Timeline, title: string, subtitle: string): string {
  const width = 960;
  const left = 110;
  const right = width - 20;
  const top = 56;
  const plotBottom = 300;
  const laneHeight = 22;
  const lanesTop = plotBottom + 58;
  const lanesBottom = lanesTop + timeline.members.length * laneHeight;
  const height = lanesBottom + 70;
  const samples = timeline.samples;
  const tEnd = Math.max(1, ...samples.map((s) => s.t), ...timeline.marks.map((m) => m.t));
  const tStart = Math.min(tEnd - 1, samples[0]?.t ?? 0, ...timeline.marks.map((m) => m.t));
  const xStep = step(tEnd - tStart, 10);
  const xTicks: number[] = [];
  for (let k = Math.ceil(tStart / xStep - 1e-9); k * xStep <= tEnd + 1e-9; k++) xTicks.push(k * xStep);
  const x = (t: number): number => left + ((t - tStart) / (tEnd - tStart)) * (right - left);
  const yMax = Math.max(1, ...samples.flatMap((s) => [s.opsPerSecond, ...Object.values(s.served)]));
  const yTicks = ticks(yMax * 1.1, 5);
  const yTop = yTicks[yTicks.length - 1]!;
  const y = (v: number): number => plotBottom - (v / yTop) * (plotBottom - top);

  const parts: string[] = [];
  parts.push(`<text x="${n(width / 2)}" y="22" text-anchor="middle" font-size="16" font-weight="600" fill="#222">${escapeXml(title)}</text>`);
  parts.push(`<text x="${n(width / 2)}" y="40" text-anchor="middle" font-size="11" fill="#666">${escapeXml(subtitle)}</text>`);
  // Axes and grid.
  for (const v of yTicks) {
    parts.push(`<line x1="${left}" x2="${right}" y1="${n(y(v))}" y2="${n(y(v))}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${n(y(v) + 4)}" text-anchor="end" font-size="10" fill="#555">${short(v)}</text>`);
  }
  parts.push(`<text x="16" y="${n((top + plotBottom) / 2)}" transform="rotate(-90 16 ${n((top + plotBottom) / 2)})" text-anchor="middle" font-size="11" fill="#444">per second</text>`);
  for (const t of xTicks) {
    parts.push(`<text x="${n(x(t))}" y="${lanesBottom + 16}" text-anchor="middle" font-size="10" fill="#555">${short(t)}</text>`);
    parts.push(`<line x1="${n(x(t))}" x2="${n(x(t))}" y1="${lanesBottom}" y2="${lanesBottom + 4}" stroke="#888"/>`);
  }
  parts.push(`<text x="${n((left + right) / 2)}" y="${lanesBottom + 32}" text-anchor="middle" font-size="11" fill="#444">seconds since the demo started</text>`);
  parts.push(`<line x1="${left}" x2="${right}" y1="${plotBottom}" y2="${plotBottom}" stroke="#888"/>`);

  // Member lanes: a rectangle per run of equal states.
  parts.push(`<text x="${left - 6}" y="${lanesTop - 8}" text-anchor="end" font-size="11" font-weight="600" fill="#444">member state</text>`);
  timeline.members.forEach((member, i) => {
    const laneY = lanesTop + i * laneHeight;
    parts.push(`<text x="${left - 6}" y="${n(laneY + laneHeight / 2 + 4)}" text-anchor="end" font-size="11" fill="#333">${escapeXml(member)}</text>`);
    let runStart = 0;
    for (let k = 1; k <= samples.length; k++) {
      const state = samples[runStart]?.states[member];
      if (k < samples.length && samples[k]!.states[member] === state) continue;
      if (state !== undefined) {
        const x0 = x(samples[runStart]!.t);
        const x1 = k < samples.length ? x(samples[k]!.t) : x(samples[samples.length - 1]!.t);
        const label = `${member}: ${state} ${samples[runStart]!.t.toFixed(1)}-${(k < samples.length ? samples[k]! : samples[samples.length - 1]!).t.toFixed(1)} s`;
        parts.push(`<rect x="${n(x0)}" y="${n(laneY + 2)}" width="${n(Math.max(1, x1 - x0))}" height="${laneHeight - 4}" fill="${STATE_COLORS[state]}"><title>${escapeXml(label)}</title></rect>`);
      }
      runStart = k;
    }
  });

  // Moments of the story: dashed lines, labels in rows that do not overlap.
  const rowEnds: number[] = [];
  for (const mark of [...timeline.marks].sort((a, b) => a.t - b.t)) {
    const mx = x(mark.t);
    const textWidth = mark.label.length * 5.5;
    const flip = mx + 3 + textWidth > width - 4;
    const start = flip ? mx - 3 - textWidth : mx + 3;
    let row = rowEnds.findIndex((end) => start >= end);
    if (row < 0) row = rowEnds.length;
    rowEnds[row] = start + textWidth + 6;
    const color = MARK_COLORS[mark.kind];
    parts.push(`<line x1="${n(mx)}" x2="${n(mx)}" y1="${top}" y2="${lanesBottom}" stroke="${color}" stroke-dasharray="3 3" stroke-opacity="0.8"/>`);
    parts.push(`<text x="${n(flip ? mx - 3 : mx + 3)}" y="${n(top + 10 + 11 * row)}"${flip ? ' text-anchor="end"' : ''} font-size="9.5" fill="${color}">${escapeXml(mark.label)}</text>`);
  }

  // Lines: the load's operations per second, then each member's calls per second.
  const line = (points: readonly (readonly [number, number])[], color: string, widthPx: number, dash = ''): string =>
    `<polyline fill="none" stroke="${color}" stroke-width="${widthPx}"${dash} stroke-linejoin="round" points="${points.map(([t, v]) => `${n(x(t))},${n(y(v))}`).join(' ')}"/>`;
  timeline.members.forEach((member, i) => {
    parts.push(line(samples.map((s) => [s.t, s.served[member] ?? 0] as const), PALETTE[i % PALETTE.length]!, 1.4));
  });
  parts.push(line(samples.map((s) => [s.t, s.opsPerSecond] as const), '#222', 2.2));
  // Failed operations, if any, as red ticks on the time axis where the count grew.
  samples.forEach((s, k) => {
    if (k > 0 && s.failed > samples[k - 1]!.failed) {
      parts.push(`<circle cx="${n(x(s.t))}" cy="${plotBottom}" r="4" fill="#c0392b"><title>${s.failed - samples[k - 1]!.failed} failed operation(s)</title></circle>`);
    }
  });

  // Legends: series, then states.
  const legend: { name: string; color: string }[] = [
    { name: 'load: operations/s', color: '#222' },
    ...timeline.members.map((m, i) => ({ name: `${m}: calls/s`, color: PALETTE[i % PALETTE.length]! })),
  ];
  let lx = left;
  const ly = plotBottom + 26;
  for (const item of legend) {
    parts.push(`<rect x="${n(lx)}" y="${ly - 9}" width="14" height="4" fill="${item.color}"/><text x="${n(lx + 18)}" y="${ly - 3}" font-size="10.5" fill="#333">${escapeXml(item.name)}</text>`);
    lx += 26 + item.name.length * 5.8;
  }
  lx = left;
  const sy = lanesBottom + 52;
  for (const [state, color] of Object.entries(STATE_COLORS).filter(([s]) => s !== 'removed')) {
    parts.push(`<rect x="${n(lx)}" y="${sy - 9}" width="11" height="11" rx="2" fill="${color}"/><text x="${n(lx + 15)}" y="${sy}" font-size="10.5" fill="#333">${state}</text>`);
    lx += 30 + state.length * 6;
  }

  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${n(height)}" viewBox="0 0 ${width} ${n(height)}" ${FONT}>` +
    `<rect width="100%" height="100%" fill="#fff"/>${parts.join('')}</svg>\n`
  );
}
