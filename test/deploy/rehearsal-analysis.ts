import path from 'node:path';
import { DEPLOY, filesUnder, readYamlDocuments } from './helpers.js';

/**
 * The shipped Argo Rollouts AnalysisTemplate, run the way Argo runs it: arguments resolved (the Rollout's
 * values over the template's defaults), `{{args.NAME}}` substituted, each metric's PromQL sent to
 * Prometheus' /api/v1/query, the result turned into Argo's `result` (a list of floats for a vector), and
 * the metric's successCondition / failureCondition evaluated as expr-lang expressions, then Argo's rule
 * for a measurement's phase and the metric's failureLimit applied.
 */
export interface AnalysisArg {
  name: string;
  value?: string;
}

export interface AnalysisMetric {
  name: string;
  failureLimit?: number;
  successCondition?: string;
  failureCondition?: string;
  provider: { prometheus: { address: string; query: string } };
}

export interface AnalysisTemplate {
  metadata: { name: string };
  spec: { args?: AnalysisArg[]; metrics: AnalysisMetric[] };
}

type K8sObject = { kind: string; metadata: { name: string }; spec: Record<string, unknown> };

/** The AnalysisTemplate the production Rollout's canary analysis names, and the args the Rollout passes. */
export function shippedAnalysis(): { template: AnalysisTemplate; rolloutArgs: AnalysisArg[] } {
  const objects = filesUnder(path.join(DEPLOY, 'k8s'), /\.ya?ml$/).flatMap(
    (file) => readYamlDocuments(file) as K8sObject[],
  );
  const rollout = objects.find((o) => o.kind === 'Rollout');
  if (!rollout) throw new Error('no Rollout under deploy/k8s');
  const analysis = (
    rollout.spec as {
      strategy: { canary: { analysis: { templates: { templateName: string }[]; args?: AnalysisArg[] } } };
    }
  ).strategy.canary.analysis;
  const name = analysis.templates[0]!.templateName;
  const template = objects.find((o) => o.kind === 'AnalysisTemplate' && o.metadata.name === name);
  if (!template) throw new Error(`no AnalysisTemplate ${name} under deploy/k8s`);
  return { template: template as unknown as AnalysisTemplate, rolloutArgs: analysis.args ?? [] };
}

/** Argo's argument resolution: a value given by the Rollout wins over the template's default; none is an error. */
export function resolveArgs(template: AnalysisTemplate, given: AnalysisArg[]): Record<string, string> {
  const args: Record<string, string> = {};
  for (const arg of template.spec.args ?? []) {
    const value = given.find((g) => g.name === arg.name)?.value ?? arg.value;
    if (value === undefined) throw new Error(`args.${arg.name} was not resolved`);
    args[arg.name] = value;
  }
  for (const g of given) {
    if (!(g.name in args)) throw new Error(`argument ${g.name} is not declared by ${template.metadata.name}`);
  }
  return args;
}

/** `{{args.NAME}}` replaced; any other `{{…}}` left over is an error, as Argo refuses to run it. */
export function substitute(text: string, args: Record<string, string>): string {
  const out = text.replace(/\{\{\s*args\.([\w-]+)\s*\}\}/g, (whole, name: string) => {
    if (!(name in args)) throw new Error(`${whole}: no such argument`);
    return args[name]!;
  });
  const left = /\{\{[^}]*\}\}/.exec(out);
  if (left) throw new Error(`unresolved ${left[0]}`);
  return out;
}

// --- expr-lang, the subset analysis conditions use ----------------------------------------------------

type Value = number | boolean | string | null | Value[];
type Token = { kind: 'num' | 'str' | 'id' | 'op'; text: string };

const OPERATORS = [
  '||',
  '&&',
  '==',
  '!=',
  '<=',
  '>=',
  '<',
  '>',
  '+',
  '-',
  '*',
  '/',
  '%',
  '!',
  '(',
  ')',
  '[',
  ']',
  ',',
];

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const rest = source.slice(i);
    const space = /^\s+/.exec(rest);
    if (space) {
      i += space[0].length;
      continue;
    }
    const num = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(rest);
    const id = /^[A-Za-z_]\w*/.exec(rest);
    const str = /^"(?:[^"\\]|\\.)*"|^'(?:[^'\\]|\\.)*'/.exec(rest);
    const op = OPERATORS.find((o) => rest.startsWith(o));
    const token: Token | undefined = num
      ? { kind: 'num', text: num[0] }
      : id
        ? { kind: 'id', text: id[0] }
        : str
          ? { kind: 'str', text: str[0] }
          : op
            ? { kind: 'op', text: op }
            : undefined;
    if (!token) throw new Error(`expr: unexpected "${rest[0]}" at ${i} in: ${source}`);
    tokens.push(token);
    i += token.text.length;
  }
  return tokens;
}

/** Argo's functions for conditions (isNaN, isInf) and expr-lang's builtins the kit might use. */
const FUNCTIONS: Record<string, (...args: Value[]) => Value> = {
  len: (v) => {
    if (Array.isArray(v) || typeof v === 'string') return v.length;
    throw new Error(`len() of ${JSON.stringify(v)}`);
  },
  isNaN: (v) => typeof v === 'number' && Number.isNaN(v),
  isInf: (v) => typeof v === 'number' && !Number.isFinite(v) && !Number.isNaN(v),
  abs: (v) => Math.abs(num(v)),
};

function num(v: Value): number {
  if (typeof v !== 'number') throw new Error(`expr: ${JSON.stringify(v)} is not a number`);
  return v;
}

function bool(v: Value): boolean {
  if (typeof v !== 'boolean') throw new Error(`expr: ${JSON.stringify(v)} is not a boolean`);
  return v;
}

/**
 * Evaluates an expr-lang expression with `env` as its variables: literals, variables, indexing,
 * function calls, unary ! and -, arithmetic, comparisons and the short-circuit && / || (and/or/not).
 * Runtime errors (an index out of range, a type mismatch) throw, as expr-lang's do; anything outside the
 * subset is refused rather than guessed.
 */
export function evaluateExpr(source: string, env: Record<string, Value>): Value {
  const tokens = tokenize(source);
  let pos = 0;
  const peek = () => tokens[pos];
  const isOp = (...texts: string[]) => {
    const t = peek();
    return t !== undefined && (t.kind === 'op' || t.kind === 'id') && texts.includes(t.text);
  };
  const expect = (text: string) => {
    if (!isOp(text)) throw new Error(`expr: expected "${text}" at token ${pos} in: ${source}`);
    pos++;
  };
  // Each level returns a thunk so && and || evaluate their right side only when needed.
  type Thunk = () => Value;
  const or = (): Thunk => {
    let left = and();
    while (isOp('||', 'or')) {
      pos++;
      const [l, r] = [left, and()];
      left = () => bool(l()) || bool(r());
    }
    return left;
  };
  const and = (): Thunk => {
    let left = comparison();
    while (isOp('&&', 'and')) {
      pos++;
      const [l, r] = [left, comparison()];
      left = () => bool(l()) && bool(r());
    }
    return left;
  };
  const comparison = (): Thunk => {
    let left = additive();
    while (isOp('==', '!=', '<', '<=', '>', '>=')) {
      const op = tokens[pos++]!.text;
      const [l, r] = [left, additive()];
      left = () => {
        const a = l();
        const b = r();
        if (op === '==') return a === b;
        if (op === '!=') return a !== b;
        const [x, y] = [num(a), num(b)];
        return op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
      };
    }
    return left;
  };
  const additive = (): Thunk => {
    let left = multiplicative();
    while (isOp('+', '-')) {
      const op = tokens[pos++]!.text;
      const [l, r] = [left, multiplicative()];
      left = () => (op === '+' ? num(l()) + num(r()) : num(l()) - num(r()));
    }
    return left;
  };
  const multiplicative = (): Thunk => {
    let left = unary();
    while (isOp('*', '/', '%')) {
      const op = tokens[pos++]!.text;
      const [l, r] = [left, unary()];
      left = () => {
        const [x, y] = [num(l()), num(r())];
        return op === '*' ? x * y : op === '/' ? x / y : x % y;
      };
    }
    return left;
  };
  const unary = (): Thunk => {
    if (isOp('!', 'not')) {
      pos++;
      const operand = unary();
      return () => !bool(operand());
    }
    if (isOp('-')) {
      pos++;
      const operand = unary();
      return () => -num(operand());
    }
    return postfix();
  };
  const postfix = (): Thunk => {
    let value = primary();
    while (isOp('[')) {
      pos++;
      const [target, index] = [value, or()];
      expect(']');
      value = () => {
        const list = target();
        const i = num(index());
        if (!Array.isArray(list)) throw new Error(`expr: cannot index ${JSON.stringify(list)}`);
        const at = i < 0 ? list.length + i : i;
        if (!Number.isInteger(at) || at < 0 || at >= list.length)
          throw new Error(`expr: index out of range: ${i} (array of length ${list.length})`);
        return list[at]!;
      };
    }
    return value;
  };
  const primary = (): Thunk => {
    const t = tokens[pos++];
    if (!t) throw new Error(`expr: unexpected end of: ${source}`);
    if (t.kind === 'num') return () => Number(t.text);
    if (t.kind === 'str') return () => t.text.slice(1, -1);
    if (t.kind === 'op' && t.text === '(') {
      const inner = or();
      expect(')');
      return inner;
    }
    if (t.kind === 'id') {
      if (t.text === 'true' || t.text === 'false') return () => t.text === 'true';
      if (t.text === 'nil') return () => null;
      if (isOp('(')) {
        pos++;
        const fn = FUNCTIONS[t.text];
        if (!fn) throw new Error(`expr: unknown function ${t.text}()`);
        const args: Thunk[] = [];
        while (!isOp(')')) {
          args.push(or());
          if (!isOp(')')) expect(',');
        }
        expect(')');
        return () => fn(...args.map((a) => a()));
      }
      if (!(t.text in env)) throw new Error(`expr: unknown name ${t.text}`);
      return () => env[t.text]!;
    }
    throw new Error(`expr: unexpected "${t.text}" in: ${source}`);
  };
  const program = or();
  if (pos !== tokens.length) throw new Error(`expr: unexpected "${tokens[pos]!.text}" in: ${source}`);
  return program();
}

// --- measurements ------------------------------------------------------------------------------------

export type MeasurementPhase = 'Successful' | 'Failed' | 'Inconclusive' | 'Error';

/** Argo's EvaluateResult: without a failureCondition, not successful means failed (and vice versa). */
export function measurementPhase(metric: AnalysisMetric, result: Value): MeasurementPhase {
  const condition = (expr: string) => {
    const value = evaluateExpr(expr, { result });
    if (typeof value !== 'boolean') throw new Error(`${metric.name}: "${expr}" is not a boolean expression`);
    return value;
  };
  let success = false;
  let failure = false;
  try {
    if (metric.successCondition) success = condition(metric.successCondition);
    if (metric.failureCondition) failure = condition(metric.failureCondition);
  } catch {
    return 'Error';
  }
  if (!metric.successCondition && !metric.failureCondition) return 'Successful';
  if (metric.successCondition && !metric.failureCondition) failure = !success;
  if (!metric.successCondition && metric.failureCondition) success = !failure;
  if (failure) return 'Failed';
  return success ? 'Successful' : 'Inconclusive';
}

/** A Prometheus instant-query answer as Argo's prometheus provider hands it to the conditions. */
export function argoResult(data: {
  resultType: string;
  result: { value: [number, string] }[] | [number, string];
}): Value {
  if (data.resultType === 'vector')
    return (data.result as { value: [number, string] }[]).map((r) => Number.parseFloat(r.value[1]));
  if (data.resultType === 'scalar') return Number.parseFloat((data.result as [number, string])[1]);
  throw new Error(`Argo's prometheus provider does not handle a ${data.resultType} result`);
}

export interface Measurement {
  metric: string;
  query: string;
  result: Value;
  phase: MeasurementPhase;
}

/**
 * One measurement of every metric of the template against Prometheus at `promUrl` (given to the template
 * as its `prometheus-address` argument, as a Rollout would), and the analysis' verdict: Failed (the
 * Rollout aborts and rolls back) when a metric has more failed measurements than its failureLimit.
 */
export async function runAnalysis(
  template: AnalysisTemplate,
  given: AnalysisArg[],
): Promise<{ measurements: Measurement[]; phase: 'Successful' | 'Failed' }> {
  const args = resolveArgs(template, given);
  const measurements: Measurement[] = [];
  for (const metric of template.spec.metrics) {
    const { address, query: rawQuery } = metric.provider.prometheus;
    const query = substitute(rawQuery, args);
    const res = await fetch(`${substitute(address, args)}/api/v1/query?query=${encodeURIComponent(query)}`);
    const json = (await res.json()) as {
      status: string;
      data: Parameters<typeof argoResult>[0];
      error?: string;
    };
    if (json.status !== 'success') throw new Error(`${metric.name}: Prometheus said ${json.error}`);
    const result = argoResult(json.data);
    measurements.push({ metric: metric.name, query, result, phase: measurementPhase(metric, result) });
  }
  const failed = template.spec.metrics.some(
    (m) =>
      measurements.filter((x) => x.metric === m.name && x.phase === 'Failed').length > (m.failureLimit ?? 0),
  );
  return { measurements, phase: failed ? 'Failed' : 'Successful' };
}
