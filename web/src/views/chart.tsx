import { formatBytes, formatMs, variantFacts } from '../format.ts';
import type { VersionRow } from './app.tsx';

/** At most this many versions are drawn (the newest): beyond it bars get too thin to read. */
export const CHART_VERSIONS = 20;

interface Series {
  label: string;
  unit: (value: number | undefined) => string;
  pick: (row: VersionRow, variant: 'original' | 'optimized') => number | undefined;
}

const SERIES: Series[] = [
  { label: 'Size', unit: formatBytes, pick: (row, variant) => (row.succeeded ? variantFacts(row.succeeded, variant).bytes : undefined) },
  { label: 'Start-up', unit: formatMs, pick: (row, variant) => (row.succeeded ? variantFacts(row.succeeded, variant).startupMs : undefined) },
];

/** Original and optimized, side by side, for each version's latest succeeded build, oldest on the left. */
export function VersionChart({ rows }: { rows: VersionRow[] }) {
  const shown = rows.filter((row) => row.succeeded).slice(0, CHART_VERSIONS).reverse();
  if (shown.length === 0) return null;
  return (
    <figure class="charts">
      {SERIES.map((series) => (
        <BarChart key={series.label} series={series} rows={shown} />
      ))}
      <figcaption>
        <span class="legend original">original</span> <span class="legend optimized">optimized</span> — latest succeeded build of each version, oldest first
      </figcaption>
    </figure>
  );
}

const HEIGHT = 120;
const BAR = 12;
const GAP = 14;

function BarChart({ series, rows }: { series: Series; rows: VersionRow[] }) {
  const values = rows.flatMap((row) => [series.pick(row, 'original'), series.pick(row, 'optimized')]).filter((value): value is number => value !== undefined);
  if (values.length === 0) return null;
  const max = Math.max(...values, 1e-9);
  const width = rows.length * (2 * BAR + GAP) + GAP;
  const description = rows
    .map((row) => `${row.version.version}: ${series.unit(series.pick(row, 'original'))} → ${series.unit(series.pick(row, 'optimized'))}`)
    .join('; ');
  return (
    <div class="chart">
      <h3>{series.label}</h3>
      <svg viewBox={`0 0 ${width} ${HEIGHT + 20}`} width={width} height={HEIGHT + 20} role="img" aria-label={`${series.label} by version: ${description}`}>
        {rows.map((row, index) => {
          const x = GAP + index * (2 * BAR + GAP);
          return (
            <g key={row.version.id}>
              {(['original', 'optimized'] as const).map((variant, offset) => {
                const value = series.pick(row, variant);
                if (value === undefined) return null;
                const height = Math.max(1, (value / max) * HEIGHT);
                return (
                  <rect key={variant} class={`bar ${variant}`} x={x + offset * BAR} y={HEIGHT - height} width={BAR - 1} height={height}>
                    <title>{`${row.version.version} ${variant}: ${series.unit(value)}`}</title>
                  </rect>
                );
              })}
              <text x={x + BAR} y={HEIGHT + 14} text-anchor="middle" class="axis">
                {row.version.version}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
