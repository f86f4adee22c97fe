import { useEffect, useMemo, useRef, useState } from 'react';
import uPlot from 'uplot';
import { errorText } from '../App';
import { api, type UsageRow } from '../api/client';
import { Breakdown, downloadCsv, usageCsv } from './UsageBreakdown';

const axis = (fg: string) => ({
  stroke: fg,
  grid: { stroke: 'rgba(128, 128, 128, 0.25)' },
  ticks: { stroke: 'rgba(128, 128, 128, 0.25)' },
});
// uPlot's default labels round to the tick step's decimals, so fractions of a cent all read "0".
const yValues = (_u: uPlot, splits: number[]) =>
  splits.map((v) => (v !== 0 && Math.abs(v) < 1 ? String(Number(v.toPrecision(2))) : v.toLocaleString()));
const day = (d: Date) => d.toISOString().slice(0, 10);
const daysAgo = (n: number) => day(new Date(Date.now() - n * 86_400_000));

/** One small time-series chart: x is the day (seconds), y the given series. */
function Chart({
  title,
  rows,
  series,
}: {
  title: string;
  rows: UsageRow[];
  series: { label: string; value: (r: UsageRow) => number }[];
}) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!el.current) return;
    const xs = rows.map((r) => Date.parse(`${r.key}T00:00:00Z`) / 1000);
    const data: uPlot.AlignedData = [xs, ...series.map((s) => rows.map(s.value))];
    const colors = ['#2f6fde', '#d9822b', '#2e9d5b'];
    // Canvas text does not follow CSS: take the page's text colour (light or dark scheme).
    const fg = getComputedStyle(el.current).color;
    const plot = new uPlot(
      {
        width: Math.max(260, el.current.clientWidth),
        height: 180,
        series: [
          {},
          ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2 })),
        ],
        axes: [axis(fg), { ...axis(fg), values: yValues, size: 60 }],
        scales: { x: { time: true } },
      },
      data,
      el.current,
    );
    return () => plot.destroy();
  }, [rows, series]);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={el} role="img" aria-label={`${title} per day`} />
    </figure>
  );
}

const SERIES = {
  requests: [
    { label: 'requests', value: (r: UsageRow) => r.requests },
    { label: 'errors', value: (r: UsageRow) => r.errors },
  ],
  tokens: [
    { label: 'prompt tokens', value: (r: UsageRow) => r.prompt_tokens },
    { label: 'completion tokens', value: (r: UsageRow) => r.completion_tokens },
  ],
  cost: [{ label: 'cost (USD)', value: (r: UsageRow) => r.cost_usd }],
  cacheHits: [
    {
      label: 'cache hit ratio (%)',
      value: (r: UsageRow) => (r.requests ? (100 * r.cached_requests) / r.requests : 0),
    },
  ],
  rejections: [
    { label: 'rate limited', value: (r: UsageRow) => r.rate_limited ?? 0 },
    { label: 'over budget', value: (r: UsageRow) => r.budget_exceeded ?? 0 },
  ],
  latency: [
    { label: 'p50 latency (ms)', value: (r: UsageRow) => r.p50_latency_ms ?? 0 },
    { label: 'p95 latency (ms)', value: (r: UsageRow) => r.p95_latency_ms ?? 0 },
    { label: 'p50 time to first token (ms)', value: (r: UsageRow) => r.p50_ttft_ms ?? 0 },
  ],
};

/** Every day from `from` to `to`, zero where nothing was recorded, so the charts show the whole range. */
export function fillDays(rows: UsageRow[], from: string, to: string): UsageRow[] {
  const byDay = new Map(rows.map((r) => [r.key, r]));
  const out: UsageRow[] = [];
  const end = Date.parse(`${to}T00:00:00Z`);
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= end && out.length < 3660; t += 86_400_000) {
    const key = day(new Date(t));
    out.push(
      byDay.get(key) ?? {
        key,
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0,
        cached_requests: 0,
        errors: 0,
      },
    );
  }
  return out;
}

export const toCsv = (rows: UsageRow[]) => usageCsv('day', rows, (r) => [r.key ?? '']);

export function UsagePage({ isAdmin }: { isAdmin: boolean }) {
  const [from, setFrom] = useState(daysAgo(13));
  const [to, setTo] = useState(day(new Date()));
  const [rows, setRows] = useState<UsageRow[]>([]);
  const [error, setError] = useState('');
  const [loaded, setLoaded] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `loaded` is the refresh trigger
  useEffect(() => {
    api
      .usage({ from, to, group_by: 'day' })
      .then((u) => {
        setRows(u.data);
        setError('');
      })
      .catch((err) => setError(errorText(err)));
  }, [from, to, loaded]);

  const download = () => downloadCsv(toCsv(rows), `colloquy-usage-${from}-${to}.csv`);

  const days = useMemo(() => fillDays(rows, from, to), [rows, from, to]);
  const total = rows.reduce(
    (t, r) => ({
      requests: t.requests + r.requests,
      tokens: t.tokens + r.prompt_tokens + r.completion_tokens,
      cost: t.cost + r.cost_usd,
      cached: t.cached + r.cached_requests,
      refused: t.refused + (r.rate_limited ?? 0) + (r.budget_exceeded ?? 0),
    }),
    { requests: 0, tokens: 0, cost: 0, cached: 0, refused: 0 },
  );
  const hitRatio = total.requests ? (100 * total.cached) / total.requests : 0;

  return (
    <section className="page">
      <h1>Usage</h1>
      <p className="muted">{isAdmin ? 'Everyone’s usage (you are an administrator).' : 'Your own usage.'}</p>
      <form className="row" onSubmit={(e) => e.preventDefault()}>
        <label>
          From
          <input
            type="date"
            value={from}
            max={to}
            onChange={(e) => e.target.value && setFrom(e.target.value)}
          />
        </label>
        <label>
          To
          <input
            type="date"
            value={to}
            min={from}
            onChange={(e) => e.target.value && setTo(e.target.value)}
          />
        </label>
        <button type="button" onClick={() => setLoaded((n) => n + 1)}>
          Refresh
        </button>
        <button type="button" onClick={download} disabled={!rows.length}>
          Export CSV
        </button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <p className="totals" data-testid="usage-totals">
        <span>{total.requests} requests</span> · <span>{total.tokens} tokens</span> ·{' '}
        <span>${total.cost.toFixed(4)}</span> ·{' '}
        <span data-testid="cache-hit-ratio">{hitRatio.toFixed(1)}% cache hits</span> ·{' '}
        <span data-testid="limit-rejections">{total.refused} refused by limits</span>
      </p>
      <div className="charts">
        <Chart title="Requests" rows={days} series={SERIES.requests} />
        <Chart title="Tokens" rows={days} series={SERIES.tokens} />
        <Chart title="Cost" rows={days} series={SERIES.cost} />
        <Chart title="Latency" rows={days} series={SERIES.latency} />
        <Chart title="Cache hit ratio" rows={days} series={SERIES.cacheHits} />
        <Chart title="Limit rejections" rows={days} series={SERIES.rejections} />
      </div>
      <h2>Per day</h2>
      <div className="scroll">
        <table>
          <caption className="sr-only">Usage per day</caption>
          <thead>
            <tr>
              <th scope="col">Day</th>
              <th scope="col">Requests</th>
              <th scope="col">Prompt tokens</th>
              <th scope="col">Completion tokens</th>
              <th scope="col">Cost (USD)</th>
              <th scope="col">Cached</th>
              <th scope="col">Errors</th>
              <th scope="col">Refused</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.key ?? ''}>
                <th scope="row">{r.key}</th>
                <td>{r.requests}</td>
                <td>{r.prompt_tokens}</td>
                <td>{r.completion_tokens}</td>
                <td>{r.cost_usd.toFixed(6)}</td>
                <td>{r.cached_requests}</td>
                <td>{r.errors}</td>
                <td>{(r.rate_limited ?? 0) + (r.budget_exceeded ?? 0)}</td>
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td colSpan={8}>No usage in this range.</td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Breakdown isAdmin={isAdmin} from={from} to={to} refresh={loaded} />
    </section>
  );
}
