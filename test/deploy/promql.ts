import { createMetrics } from '../../src/metrics/registry.js';

/**
 * Just enough of PromQL to list what an expression reads: metric selectors (name + the label names of
 * their matchers), function calls and grouping labels. Strings, ranges, numbers, durations and Grafana
 * variables are skipped. Used to keep every dashboard, alert and canary query in step with the metrics
 * Colloquy really exports (src/metrics/registry.ts + prom-client's defaults).
 */
export interface Selector {
  name: string;
  labels: string[];
}

export interface PromqlSummary {
  selectors: Selector[];
  functions: string[];
  groupingLabels: string[];
}

const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'start', 'end']);
export const PROMQL_FUNCTIONS = new Set([
  // aggregations
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  // functions
  'abs',
  'absent',
  'absent_over_time',
  'ceil',
  'changes',
  'clamp',
  'clamp_max',
  'clamp_min',
  'day_of_month',
  'day_of_week',
  'day_of_year',
  'days_in_month',
  'delta',
  'deriv',
  'exp',
  'floor',
  'histogram_quantile',
  'holt_winters',
  'hour',
  'idelta',
  'increase',
  'irate',
  'label_join',
  'label_replace',
  'ln',
  'log2',
  'log10',
  'minute',
  'month',
  'predict_linear',
  'rate',
  'resets',
  'round',
  'scalar',
  'sgn',
  'sort',
  'sort_desc',
  'sqrt',
  'time',
  'timestamp',
  'vector',
  'year',
  'avg_over_time',
  'min_over_time',
  'max_over_time',
  'sum_over_time',
  'count_over_time',
  'quantile_over_time',
  'stddev_over_time',
  'stdvar_over_time',
  'last_over_time',
  'present_over_time',
]);

const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const NUMBER =
  /(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*(?:\d+(?:ms|[smhdwy]))*/y;

function skipString(expr: string, i: number): number {
  const quote = expr[i];
  let j = i + 1;
  while (j < expr.length && expr[j] !== quote) j += expr[j] === '\\' && quote !== '`' ? 2 : 1;
  return j + 1;
}

/** The index just past the bracket that closes the one at i (strings inside are skipped). */
function closing(expr: string, i: number, open: string, close: string): number {
  let depth = 0;
  for (let j = i; j < expr.length; j++) {
    const c = expr[j]!;
    if (c === '"' || c === "'" || c === '`') {
      j = skipString(expr, j) - 1;
    } else if (c === open) depth++;
    else if (c === close && --depth === 0) return j + 1;
  }
  throw new Error(`unbalanced ${open} in: ${expr}`);
}

function matcherLabels(block: string): string[] {
  const withoutStrings = block.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  return [...withoutStrings.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!);
}

export function analyzePromql(expr: string): PromqlSummary {
  const summary: PromqlSummary = { selectors: [], functions: [], groupingLabels: [] };
  let i = 0;
  const numberEnd = (from: number) => {
    NUMBER.lastIndex = from;
    return NUMBER.test(expr) ? NUMBER.lastIndex : -1;
  };
  const nextNonSpace = (from: number) => {
    let j = from;
    while (j < expr.length && /\s/.test(expr[j]!)) j++;
    return j;
  };
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '#') {
      while (i < expr.length && expr[i] !== '\n') i++;
    } else if (c === '"' || c === "'" || c === '`') {
      i = skipString(expr, i);
    } else if (c === '[') {
      i = closing(expr, i, '[', ']');
    } else if (c === '{') {
      const end = closing(expr, i, '{', '}');
      summary.selectors.push({ name: '', labels: matcherLabels(expr.slice(i + 1, end - 1)) });
      i = end;
    } else if (c === '$') {
      i++;
      if (expr[i] === '{') i = closing(expr, i, '{', '}');
      else while (i < expr.length && /\w/.test(expr[i]!)) i++;
    } else if (/[0-9.]/.test(c) && numberEnd(i) > i) {
      i = numberEnd(i);
    } else if (/[a-zA-Z_:]/.test(c)) {
      IDENT.lastIndex = i;
      IDENT.test(expr);
      const word = expr.slice(i, IDENT.lastIndex);
      i = IDENT.lastIndex;
      const after = nextNonSpace(i);
      const lower = word.toLowerCase();
      if (GROUPING.has(lower)) {
        if (expr[after] === '(') {
          const end = closing(expr, after, '(', ')');
          const inner = expr.slice(after + 1, end - 1).trim();
          if (inner) summary.groupingLabels.push(...inner.split(',').map((l) => l.trim()));
          i = end;
        }
      } else if (expr[after] === '(' || /^(by|without)\s*\(/i.test(expr.slice(after))) {
        // a call, or an aggregation with its grouping first: sum by (le) (…)
        summary.functions.push(word);
      } else if (KEYWORDS.has(lower)) {
        // operator or modifier
      } else {
        const selector: Selector = { name: word, labels: [] };
        if (expr[after] === '{') {
          const end = closing(expr, after, '{', '}');
          selector.labels = matcherLabels(expr.slice(after + 1, end - 1));
          i = end;
        }
        summary.selectors.push(selector);
      }
    } else {
      i++;
    }
  }
  return summary;
}

/** Labels Prometheus adds to every scraped series (static configs, Kubernetes service discovery). */
export const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint'];

export interface ExportedMetric {
  name: string;
  type: string;
  labels: Set<string>;
}

/**
 * Every series name a Colloquy replica exposes on /metrics, with its label names: built from the real
 * registry (createMetrics), histograms expanded to _bucket/_sum/_count, plus Prometheus' own `up`.
 */
export async function exportedMetrics(): Promise<Map<string, ExportedMetric>> {
  const metrics = createMetrics({ track: 'stable' });
  const json = await metrics.registry.getMetricsAsJSON();
  const out = new Map<string, ExportedMetric>();
  for (const m of json) {
    const labels = new Set<string>(['track', ...TARGET_LABELS]);
    const declared = (metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] })
      .labelNames;
    for (const l of declared ?? []) labels.add(l);
    for (const v of m.values as { labels: Record<string, unknown> }[]) {
      for (const l of Object.keys(v.labels)) labels.add(l);
    }
    const type = String(m.type);
    if (type === 'histogram') {
      out.set(`${m.name}_bucket`, { name: `${m.name}_bucket`, type, labels: new Set([...labels, 'le']) });
      out.set(`${m.name}_sum`, { name: `${m.name}_sum`, type, labels });
      out.set(`${m.name}_count`, { name: `${m.name}_count`, type, labels });
    } else if (type === 'summary') {
      out.set(m.name, { name: m.name, type, labels: new Set([...labels, 'quantile']) });
      out.set(`${m.name}_sum`, { name: `${m.name}_sum`, type, labels });
      out.set(`${m.name}_count`, { name: `${m.name}_count`, type, labels });
    } else {
      out.set(m.name, { name: m.name, type, labels });
    }
  }
  out.set('up', { name: 'up', type: 'gauge', labels: new Set(TARGET_LABELS) });
  metrics.registry.clear();
  return out;
}

/**
 * Problems with one expression: unknown functions, metric names Colloquy does not export (recording
 * rules named in `recorded` and Prometheus' ALERTS excepted), and matcher labels a metric does not have.
 */
export function checkExpression(
  expr: string,
  exported: Map<string, ExportedMetric>,
  recorded: Set<string>,
): string[] {
  const problems: string[] = [];
  let summary: PromqlSummary;
  try {
    summary = analyzePromql(expr);
  } catch (err) {
    return [(err as Error).message];
  }
  for (const f of summary.functions) {
    if (!PROMQL_FUNCTIONS.has(f)) problems.push(`unknown function ${f}()`);
  }
  for (const s of summary.selectors) {
    if (!s.name) continue;
    if (recorded.has(s.name) || s.name === 'ALERTS' || s.name === 'ALERTS_FOR_STATE') continue;
    const metric = exported.get(s.name);
    if (!metric) {
      problems.push(`metric ${s.name} is not exported by Colloquy`);
      continue;
    }
    for (const label of s.labels) {
      if (label !== '__name__' && !metric.labels.has(label))
        problems.push(`metric ${s.name} has no label ${label} (it has: ${[...metric.labels].join(', ')})`);
    }
  }
  return problems;
}
