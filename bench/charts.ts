/**
 * Small SVG charts for bench/RESULTS.md: grouped bars, lines, and a grid of panels. Pure
 * functions from data to an SVG document (no dependency, no DOM): the files are committed
 * and shown by any Markdown viewer, and a test can check them as text.
 */

/** A series' name and colour. */
export interface Series {
  readonly name: string;
  /** CSS colour; a palette colour by position when omitted. */
  readonly color?: string;
}

/** A horizontal line across the plot (a baseline, a target). */
export interface RefLine {
  readonly value: number;
  readonly label: string;
  readonly color?: string;
}

/** One bar of a group; `value` NaN draws nothing (not measured). */
export interface Bar {
  readonly series: string;
  readonly value: number;
  /** Text above the bar; the formatted value when omitted. */
  readonly label?: string;
  /** A goal for this bar, drawn as a short dark tick across it. */
  readonly target?: number;
}

/** Grouped bars: one group per label, one bar per series. */
export interface BarChartSpec {
  readonly title: string;
  readonly subtitle?: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly groups: readonly { readonly label: string; readonly bars: readonly Bar[] }[];
  readonly refLines?: readonly RefLine[];
  /** Formats values for bar labels and the axis. */
  readonly format?: (value: number) => string;
  readonly width?: number;
  readonly height?: number;
}

/** Lines over categories (x = index into `categories`) or over numbers. */
export interface LineChartSpec {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Equally spaced x positions with these labels; points' x are indices. Numeric x when omitted. */
  readonly categories?: readonly string[];
  readonly series: readonly (Series & { readonly points: readonly { readonly x: number; readonly y: number }[] })[];
  readonly refLines?: readonly RefLine[];
  /**
   * Vertical lines at these x values, labelled at the top; labels that would overlap an
   * earlier one go on a lower row.
   */
  readonly xMarkers?: readonly XMarker[];
  /** Label every point with its value. */
  readonly labelPoints?: boolean;
  /** Start the y axis at zero (default true); false fits it to the data. */
  readonly yFromZero?: boolean;
  readonly format?: (value: number) => string;
  readonly width?: number;
  readonly height?: number;
}

/** A vertical line across a line chart (an event in time, a category's note). */
export interface XMarker {
  readonly x: number;
  readonly label: string;
  /** CSS colour of the line and its label. @default grey */
  readonly color?: string;
}

/**
 * The label row of each marker: the first row where its label does not overlap the
 * labels already placed (by estimated text width), in the given order.
 *
 * @param positions the markers' x positions in pixels
 * @param widths their labels' widths in pixels
 */
export function labelRows(positions: readonly number[], widths: readonly number[]): number[] {
  const rowEnds: number[] = [];
  return positions.map((x, i) => {
    let row = rowEnds.findIndex((end) => x >= end);
    if (row < 0) row = rowEnds.length;
    rowEnds[row] = x + (widths[i] ?? 0) + 6;
    return row;
  });
}

/** Colour-blind-safe palette (Tableau 10). */
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'] as const;

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** Escapes text for SVG element content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A number for an SVG attribute: at most 2 decimals, never `NaN`. */
function n(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 100) / 100) : '0';
}

/** Default number format: 3 significant digits, thousands as `12.3k`. */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return '–';
  const a = Math.abs(value);
  if (a >= 10_000) return `${(value / 1000).toFixed(a >= 100_000 ? 0 : 1)}k`;
  if (a >= 1000) return `${(value / 1000).toFixed(2)}k`;
  if (a >= 100) return value.toFixed(0);
  if (a >= 10) return value.toFixed(1);
  if (a >= 1) return value.toFixed(2);
  if (a === 0) return '0';
  return value.toPrecision(2);
}

/** A tick value as short as it is exact: `5`, `0.25`, `12k`. */
function formatTick(value: number): string {
  if (Math.abs(value) >= 10_000) return `${Number((value / 1000).toPrecision(6))}k`;
  return String(Number(value.toPrecision(6)));
}

/**
 * Round tick values covering [min, max]: steps of 1, 2 or 5 times a power of ten, about
 * `count` of them.
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max <= min) max = min + (min === 0 ? 1 : Math.abs(min) * 0.1);
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  // Whole multiples of the step, counted as integers: adding steps up in floating point
  // drifts, and could stop one tick short of a max just above a round value. The last
  // tick is the first at or above max (a max a billionth of a step above a tick is that tick).
  const first = Math.floor(min / step);
  const last = Math.max(first, Math.ceil(max / step - 1e-9));
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(k * step);
  return ticks;
}

function colorOf(series: readonly Series[], name: string): string {
  const i = series.findIndex((s) => s.name === name);
  return series[i]?.color ?? PALETTE[Math.max(0, i) % PALETTE.length]!;
}

function header(title: string, subtitle: string | undefined, width: number): string {
  return (
    `<text x="${n(width / 2)}" y="20" text-anchor="middle" font-size="15" font-weight="600" fill="#222">${escapeXml(title)}</text>` +
    (subtitle === undefined ? '' : `<text x="${n(width / 2)}" y="37" text-anchor="middle" font-size="11" fill="#666">${escapeXml(subtitle)}</text>`)
  );
}

function legend(series: readonly Series[], width: number, y: number): string {
  const itemWidth = (s: Series): number => 22 + s.name.length * 6.4;
  const total = series.reduce((a, s) => a + itemWidth(s), 0);
  let x = Math.max(4, (width - total) / 2);
  return series
    .map((s) => {
      const out = `<rect x="${n(x)}" y="${n(y - 9)}" width="11" height="11" rx="2" fill="${colorOf(series, s.name)}"/><text x="${n(x + 15)}" y="${n(y)}" font-size="11" fill="#333">${escapeXml(s.name)}</text>`;
      x += itemWidth(s);
      return out;
    })
    .join('');
}

function yAxis(ticks: readonly number[], y: (v: number) => number, left: number, right: number, label: string, top: number, bottom: number, format: (v: number) => string): string {
  const lines = ticks
    .map((t) => `<line x1="${n(left)}" x2="${n(right)}" y1="${n(y(t))}" y2="${n(y(t))}" stroke="#e5e5e5"/><text x="${n(left - 6)}" y="${n(y(t) + 4)}" text-anchor="end" font-size="10" fill="#555">${escapeXml(format(t))}</text>`)
    .join('');
  const mid = (top + bottom) / 2;
  return `${lines}<text x="14" y="${n(mid)}" transform="rotate(-90 14 ${n(mid)})" text-anchor="middle" font-size="11" fill="#444">${escapeXml(label)}</text>`;
}

/** Dashed horizontal lines, labelled at the right end (bars) or the left end (lines, whose last points sit at the right). */
function refLines(lines: readonly RefLine[] | undefined, y: (v: number) => number, left: number, right: number, labelAt: 'start' | 'end' = 'end'): string {
  return (lines ?? [])
    .map((r) => {
      const c = r.color ?? '#c0392b';
      const x = labelAt === 'end' ? right - 2 : left + 4;
      return `<line x1="${n(left)}" x2="${n(right)}" y1="${n(y(r.value))}" y2="${n(y(r.value))}" stroke="${c}" stroke-width="1.2" stroke-dasharray="5 4"/><text x="${n(x)}" y="${n(y(r.value) - 4)}" text-anchor="${labelAt}" font-size="10" fill="${c}">${escapeXml(r.label)}</text>`;
    })
    .join('');
}

function document(width: number, height: number, body: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" ${FONT}>` +
    `<rect width="100%" height="100%" fill="#fff"/>${body}</svg>\n`
  );
}

/** The body of a bar chart in a width x height box (no <svg> wrapper). */
function barBody(spec: BarChartSpec, width: number, height: number): string {
  const format = spec.format ?? formatValue;
  const top = spec.subtitle === undefined ? 34 : 50;
  const left = 58;
  const right = width - 12;
  const bottom = height - 46;
  const values = spec.groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.target ?? Number.NaN])).filter(Number.isFinite);
  const maxValue = Math.max(0, ...values, ...(spec.refLines ?? []).map((r) => r.value));
  const ticks = niceTicks(0, maxValue * 1.12 || 1);
  const yMax = ticks[ticks.length - 1]!;
  const y = (v: number): number => bottom - (v / yMax) * (bottom - top);
  const groupWidth = (right - left) / Math.max(1, spec.groups.length);
  const barWidth = Math.min(46, (groupWidth * 0.8) / Math.max(1, spec.series.length));
  let body = header(spec.title, spec.subtitle, width) + yAxis(ticks, y, left, right, spec.yLabel, top, bottom, format);
  spec.groups.forEach((g, gi) => {
    const x0 = left + gi * groupWidth + (groupWidth - barWidth * spec.series.length) / 2;
    spec.series.forEach((s, si) => {
      const bar = g.bars.find((b) => b.series === s.name);
      if (bar === undefined || !Number.isFinite(bar.value)) return;
      const x = x0 + si * barWidth;
      const h = Math.max(0, bottom - y(bar.value));
      body +=
        `<rect x="${n(x + 1)}" y="${n(bottom - h)}" width="${n(barWidth - 2)}" height="${n(h)}" fill="${colorOf(spec.series, s.name)}"><title>${escapeXml(`${g.label}, ${s.name}: ${format(bar.value)}`)}</title></rect>` +
        `<text x="${n(x + barWidth / 2)}" y="${n(bottom - h - 4)}" text-anchor="middle" font-size="${barWidth < 22 ? 8 : 10}" fill="#222">${escapeXml(bar.label ?? format(bar.value))}</text>`;
      if (bar.target !== undefined && Number.isFinite(bar.target)) {
        body += `<line x1="${n(x - 2)}" x2="${n(x + barWidth)}" y1="${n(y(bar.target))}" y2="${n(y(bar.target))}" stroke="#111" stroke-width="2"><title>${escapeXml(`target ${format(bar.target)}`)}</title></line>`;
      }
    });
    body += `<text x="${n(left + (gi + 0.5) * groupWidth)}" y="${n(bottom + 16)}" text-anchor="middle" font-size="11" fill="#333">${escapeXml(g.label)}</text>`;
  });
  body += `<line x1="${n(left)}" x2="${n(right)}" y1="${n(bottom)}" y2="${n(bottom)}" stroke="#888"/>`;
  body += refLines(spec.refLines, y, left, right);
  body += legend(spec.series, width, height - 10);
  return body;
}

/** A grouped bar chart as an SVG document. */
export function barChart(spec: BarChartSpec): string {
  const width = spec.width ?? 760;
  const height = spec.height ?? 380;
  return document(width, height, barBody(spec, width, height));
}

/** The body of a line chart in a width x height box. */
function lineBody(spec: LineChartSpec, width: number, height: number): string {
  const format = spec.format ?? formatValue;
  const top = spec.subtitle === undefined ? 34 : 50;
  const left = 58;
  const right = width - 16;
  const bottom = height - 58;
  const points = spec.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y) && Number.isFinite(p.x));
  const ys = [...points.map((p) => p.y), ...(spec.refLines ?? []).map((r) => r.value)];
  const fromZero = spec.yFromZero ?? true;
  const lo = fromZero ? 0 : Math.min(...ys);
  const hi = Math.max(...ys, lo + 1e-9);
  const pad = fromZero ? hi * 0.12 : (hi - lo) * 0.15 || Math.abs(hi) * 0.05 || 1;
  const ticks = niceTicks(fromZero ? 0 : lo - pad, hi + pad);
  const yMin = ticks[0]!;
  const yMax = ticks[ticks.length - 1]!;
  const y = (v: number): number => bottom - ((v - yMin) / (yMax - yMin)) * (bottom - top);
  let xOf: (x: number) => number;
  let xAxis = '';
  if (spec.categories !== undefined) {
    const step = (right - left) / Math.max(1, spec.categories.length);
    xOf = (x) => left + (x + 0.5) * step;
    xAxis = spec.categories.map((c, i) => `<text x="${n(xOf(i))}" y="${n(bottom + 16)}" text-anchor="middle" font-size="11" fill="#333">${escapeXml(c)}</text>`).join('');
  } else {
    const xs = points.map((p) => p.x);
    const xTicks = niceTicks(Math.min(0, ...xs), Math.max(1, ...xs), 6);
    const x0 = xTicks[0]!;
    const x1 = xTicks[xTicks.length - 1]!;
    xOf = (x) => left + ((x - x0) / (x1 - x0)) * (right - left);
    xAxis = xTicks.map((t) => `<text x="${n(xOf(t))}" y="${n(bottom + 16)}" text-anchor="middle" font-size="10" fill="#555">${escapeXml(formatTick(t))}</text>`).join('');
  }
  let body = header(spec.title, spec.subtitle, width) + yAxis(ticks, y, left, right, spec.yLabel, top, bottom, format) + xAxis;
  body += `<text x="${n((left + right) / 2)}" y="${n(bottom + 34)}" text-anchor="middle" font-size="11" fill="#444">${escapeXml(spec.xLabel)}</text>`;
  body += `<line x1="${n(left)}" x2="${n(right)}" y1="${n(bottom)}" y2="${n(bottom)}" stroke="#888"/>`;
  const markers = (spec.xMarkers ?? []).filter((m) => Number.isFinite(m.x));
  // A label goes right of its line, or left of it where it would run past the plot.
  const widths = markers.map((m) => m.label.length * 5.6);
  const starts = markers.map((m, i) => (xOf(m.x) + 3 + widths[i]! > width ? xOf(m.x) - 3 - widths[i]! : xOf(m.x) + 3));
  // Markers close in x (a kill and its detection a few ms apart) get their labels on separate rows.
  const rows = labelRows(starts, widths);
  markers.forEach((m, i) => {
    const stroke = m.color ?? '#999';
    const fill = m.color ?? '#666';
    const leftOfLine = starts[i]! < xOf(m.x);
    body +=
      `<line x1="${n(xOf(m.x))}" x2="${n(xOf(m.x))}" y1="${n(top)}" y2="${n(bottom)}" stroke="${stroke}" stroke-dasharray="3 3"/>` +
      `<text x="${n(leftOfLine ? xOf(m.x) - 3 : xOf(m.x) + 3)}" y="${n(top + 10 + 12 * rows[i]!)}"${leftOfLine ? ' text-anchor="end"' : ''} font-size="10" fill="${fill}">${escapeXml(m.label)}</text>`;
  });
  body += refLines(spec.refLines, y, left, right, 'start');
  for (const s of spec.series) {
    const color = colorOf(spec.series, s.name);
    const ps = s.points.filter((p) => Number.isFinite(p.y) && Number.isFinite(p.x));
    if (ps.length === 0) continue;
    body += `<polyline fill="none" stroke="${color}" stroke-width="2" points="${ps.map((p) => `${n(xOf(p.x))},${n(y(p.y))}`).join(' ')}"/>`;
    if (spec.labelPoints === true || ps.length <= 12) {
      for (const p of ps) {
        body += `<circle cx="${n(xOf(p.x))}" cy="${n(y(p.y))}" r="3.2" fill="${color}"><title>${escapeXml(`${s.name}: ${format(p.y)}`)}</title></circle>`;
        if (spec.labelPoints === true) body += `<text x="${n(xOf(p.x) + 5)}" y="${n(y(p.y) - 6)}" font-size="10" fill="${color}">${escapeXml(format(p.y))}</text>`;
      }
    }
  }
  body += legend(spec.series, width, height - 8);
  return body;
}

/** A line chart as an SVG document. */
export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? 760;
  const height = spec.height ?? 380;
  return document(width, height, lineBody(spec, width, height));
}

/** One panel of a {@link panels} figure. */
export type Panel = ({ readonly kind: 'bar' } & BarChartSpec) | ({ readonly kind: 'line' } & LineChartSpec);

/**
 * Several charts side by side in one SVG (small multiples: each panel keeps its own y
 * scale, so a 0.05 ms operation and a 30 ms one both read well).
 */
export function panels(title: string, subtitle: string | undefined, items: readonly Panel[], options: { columns?: number; panelWidth?: number; panelHeight?: number } = {}): string {
  const columns = Math.max(1, Math.min(options.columns ?? 3, items.length));
  const pw = options.panelWidth ?? 330;
  const ph = options.panelHeight ?? 280;
  const top = subtitle === undefined ? 34 : 50;
  const width = columns * pw;
  const height = top + Math.ceil(items.length / columns) * ph;
  let body = header(title, subtitle, width);
  items.forEach((p, i) => {
    const x = (i % columns) * pw;
    const y = top + Math.floor(i / columns) * ph;
    const inner = p.kind === 'bar' ? barBody(p, pw, ph) : lineBody(p, pw, ph);
    body += `<svg x="${n(x)}" y="${n(y)}" width="${n(pw)}" height="${n(ph)}" viewBox="0 0 ${n(pw)} ${n(ph)}">${inner}</svg>`;
  });
  return document(width, height, body);
}
