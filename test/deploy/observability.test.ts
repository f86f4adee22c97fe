import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify as toYaml } from 'yaml';
import {
  assertRan,
  DEPLOY,
  read,
  readYaml,
  readYamlDocuments,
  renderPrometheus,
  requireTool,
  ruleGroups,
  run,
} from './helpers.js';
import { checkExpression, type ExportedMetric, exportedMetrics } from './promql.js';

const SEVERITIES = ['P0', 'P1', 'P2', 'P3'];
const alerts = ruleGroups('alerts.yml').flatMap((g) => g.rules);
// Alerts on the exporters beside Colloquy (PostgreSQL, Redis, host, certificates): their metrics are the
// exporters', so only the severity / runbook rules below apply to them.
const exporterAlerts = ruleGroups('exporters.yml').flatMap((g) => g.rules);
const recordings = ruleGroups('recording.yml').flatMap((g) => g.rules);
const recorded = new Set(recordings.map((r) => r.record!));

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
  gridPos: { h: number; w: number; x: number; y: number };
}
const dashboardFiles = readdirSync(path.join(DEPLOY, 'grafana', 'dashboards')).filter((f) =>
  f.endsWith('.json'),
);
const dashboards = dashboardFiles.map(
  (f) =>
    JSON.parse(read(`deploy/grafana/dashboards/${f}`)) as {
      uid: string;
      title: string;
      panels: Panel[];
      templating: { list: { name: string; query: { query: string } | string }[] };
    },
);

/** Grafana's variables replaced by values Prometheus accepts. */
const grafanaToPromql = (expr: string) =>
  expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?(track|instance)\}?/g, '.*');

const analysisTemplate = readYamlDocuments(
  path.join(DEPLOY, 'k8s', 'overlays', 'production', 'analysis-template.yaml'),
)[0] as { spec: { metrics: { name: string; provider: { prometheus: { query: string } } }[] } };
const analysisQueries = analysisTemplate.spec.metrics.map((m) => ({
  name: m.name,
  expr: m.provider.prometheus.query.replaceAll('{{args.namespace}}', 'colloquy'),
}));

/** Every PromQL expression of the kit, named by where it lives. */
function everyExpression(): { where: string; expr: string }[] {
  return [
    ...recordings.map((r) => ({ where: `recording rule ${r.record}`, expr: r.expr })),
    ...alerts.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
    ...dashboards.flatMap((d) =>
      d.panels.flatMap((p) =>
        (p.targets ?? []).map((t) => ({
          where: `${d.uid} panel "${p.title}"`,
          expr: grafanaToPromql(t.expr),
        })),
      ),
    ),
    ...dashboards.flatMap((d) =>
      d.templating.list.map((v) => ({
        where: `${d.uid} variable $${v.name}`,
        expr: (typeof v.query === 'string' ? v.query : v.query.query).replace(
          /^label_values\((.*), \w+\)$/,
          '$1',
        ),
      })),
    ),
    ...analysisQueries.map((q) => ({ where: `AnalysisTemplate metric ${q.name}`, expr: q.expr })),
  ];
}

describe('Prometheus (deploy/prometheus)', () => {
  it('passes `promtool check config` (as shipped: syntax; rendered with a token file: fully)', (t) => {
    const promtool = requireTool(t, 'promtool', 'prometheus');
    if (!promtool) return;
    assertRan(
      run(promtool, ['check', 'config', '--syntax-only', path.join(DEPLOY, 'prometheus', 'prometheus.yml')]),
      'promtool check config --syntax-only',
    );
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-prom-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const tokenFile = path.join(dir, 'metrics_token');
    writeFileSync(tokenFile, 'test-token');
    const config = renderPrometheus({
      dir,
      targets: ['127.0.0.1:18001'],
      tokenFile,
      alertmanager: '127.0.0.1:19093',
    });
    const result = run(promtool, ['check', 'config', config]);
    assertRan(result, 'promtool check config');
    assert.match(result.stdout, /SUCCESS: 3 rule files found/);
  });

  it('scrapes every compose replica with METRICS_TOKEN and sends alerts to Alertmanager', () => {
    const config = readYaml<{
      rule_files: string[];
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[]; authorization?: object }[];
    }>('deploy/prometheus/prometheus.yml');
    const compose = readYaml<{ services: Record<string, unknown> }>('compose.yaml');
    const replicas = Object.keys(compose.services).filter((s) => /^colloquy-\d+$/.test(s));
    const job = config.scrape_configs.find((s) => s.job_name === 'colloquy')!;
    assert.deepEqual(
      job.static_configs[0]!.targets,
      replicas.map((r) => `${r}:8000`),
    );
    assert.ok(job.authorization, 'the replicas require METRICS_TOKEN');
    assert.deepEqual(config.alerting.alertmanagers[0]!.static_configs[0]!.targets, ['alertmanager:9093']);
    assert.deepEqual(config.rule_files, ['rules/*.yml']);
  });

  it('scrapes an exporter for every metric family the dependency alerts read', () => {
    const config = readYaml<{
      scrape_configs: {
        job_name: string;
        metrics_path?: string;
        params?: Record<string, string[]>;
        static_configs: { targets: string[] }[];
        relabel_configs?: { source_labels?: string[]; target_label: string; replacement?: string }[];
      }[];
    }>('deploy/prometheus/prometheus.yml');
    const rules = readYaml<{ groups: { rules: { expr: string }[] }[] }>(
      'deploy/prometheus/rules/exporters.yml',
    );
    const families = new Set(
      rules.groups.flatMap((g) =>
        g.rules.flatMap((r) => r.expr.match(/\b(pg|redis|node|probe)_[a-z_]+/g) ?? []),
      ),
    );
    const jobOf: Record<string, string> = {
      pg: 'postgres',
      redis: 'redis',
      node: 'node',
      probe: 'blackbox-tls',
    };
    for (const family of families) {
      const job = config.scrape_configs.find((s) => s.job_name === jobOf[family.split('_')[0]!]);
      assert.ok(job?.static_configs[0]?.targets.length, `${family}: a scrape job with targets`);
    }
    // The blackbox exporter is asked to probe each listed URL; the URL, not the exporter, names the instance.
    const probe = config.scrape_configs.find((s) => s.job_name === 'blackbox-tls')!;
    assert.equal(probe.metrics_path, '/probe');
    assert.deepEqual(probe.params?.module, ['http_2xx']);
    assert.ok(probe.static_configs[0]!.targets.every((u) => u.startsWith('https://')));
    const relabel = probe.relabel_configs!;
    assert.ok(
      relabel.some((r) => r.source_labels?.[0] === '__address__' && r.target_label === '__param_target'),
    );
    assert.ok(
      relabel.some((r) => r.target_label === '__address__' && r.replacement === 'blackbox-exporter:9115'),
    );
  });

  it('passes `promtool check rules`', (t) => {
    const promtool = requireTool(t, 'promtool', 'prometheus');
    if (!promtool) return;
    const files = readdirSync(path.join(DEPLOY, 'prometheus', 'rules')).map((f) =>
      path.join(DEPLOY, 'prometheus', 'rules', f),
    );
    const result = run(promtool, ['check', 'rules', ...files]);
    assertRan(result, 'promtool check rules');
    assert.equal(result.stdout.match(/SUCCESS/g)?.length, files.length);
  });

  it('passes its promtool unit tests (input series → expected alerts)', (t) => {
    const promtool = requireTool(t, 'promtool', 'prometheus');
    if (!promtool) return;
    const tests = readdirSync(path.join(DEPLOY, 'prometheus', 'tests')).filter((f) => f.endsWith('.yml'));
    assert.ok(tests.length >= 2);
    const result = run(promtool, ['test', 'rules', ...tests], {
      cwd: path.join(DEPLOY, 'prometheus', 'tests'),
    });
    assertRan(result, 'promtool test rules');
    // Alerts the unit tests prove fire (and stay quiet) on Colloquy-shaped input.
    const tested = new Set(
      tests.flatMap((f) =>
        [...read(`deploy/prometheus/tests/${f}`).matchAll(/alertname: (\w+)/g)].map((m) => m[1]),
      ),
    );
    for (const name of [
      'ColloquyInstanceDown',
      'ColloquyAllInstancesDown',
      'ColloquyHighErrorRatio',
      'ColloquySlowTimeToFirstToken',
      'ColloquyUpstreamFailing',
      'ColloquyCircuitBreakerOpen',
      'ColloquyCostBurnRateCritical',
      'ColloquyDatabaseDown',
      'ColloquyRedisDown',
      'ColloquyEventLoopLag',
      'ColloquyHighMemory',
    ]) {
      assert.ok(tested.has(name), `${name} has a promtool unit test`);
    }
  });

  it('has a P0–P3 severity, summary, description and a runbook that exists for every alert', () => {
    const runbooks = read('docs/runbooks.md');
    const anchors = new Set(
      [...runbooks.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    assert.ok(alerts.length >= 15);
    assert.ok(exporterAlerts.length >= 8);
    for (const a of [...alerts, ...exporterAlerts]) {
      assert.ok(SEVERITIES.includes(a.labels?.severity ?? ''), `${a.alert}: severity ${a.labels?.severity}`);
      assert.ok(a.labels?.component, `${a.alert}: component label (inhibition groups by it)`);
      for (const key of ['summary', 'description', 'runbook_url'])
        assert.ok(a.annotations?.[key], `${a.alert}: annotation ${key}`);
      const anchor = a.annotations!.runbook_url!.split('#')[1];
      assert.equal(anchor, a.alert!.toLowerCase(), `${a.alert}: runbook anchor`);
      assert.ok(anchors.has(anchor!), `docs/runbooks.md has a "## ${a.alert}" section`);
      assert.ok(a.for, `${a.alert}: a for: duration, no flapping pages`);
    }
    const deployment = read('docs/deployment.md');
    for (const a of [...alerts, ...exporterAlerts]) {
      assert.ok(
        // Table cells may be padded by the formatter.
        new RegExp(`\\|\\s*${a.alert}\\s*\\|\\s*${a.labels!.severity}\\s*\\|`).test(deployment),
        `docs/deployment.md maps ${a.alert} (${a.labels!.severity}) to its runbook`,
      );
    }
    const names = new Set(alerts.map((a) => a.alert));
    for (const required of [
      'ColloquyInstanceDown',
      'ColloquyAllInstancesDown',
      'ColloquyHighErrorRatio',
      'ColloquyHighLatency',
      'ColloquySlowTimeToFirstToken',
      'ColloquyUpstreamErrorRatioHigh',
      'ColloquyCircuitBreakerOpen',
      'ColloquyCostBurnRateCritical',
      'ColloquyCacheHitRatioDrop',
      'ColloquyDatabaseDown',
      'ColloquyDatabasePoolExhausted',
      'ColloquyRedisDown',
      'ColloquyEventLoopLag',
      'ColloquyHighMemory',
    ]) {
      assert.ok(names.has(required), `alert ${required}`);
    }
  });
});

describe('PromQL of the kit vs the metrics Colloquy exports', () => {
  let exported: Map<string, ExportedMetric>;
  before(async () => {
    exported = await exportedMetrics();
  });

  it('reads only metric names and labels that src/metrics/registry.ts (and prom-client) export', () => {
    const problems = everyExpression().flatMap(({ where, expr }) =>
      checkExpression(expr, exported, recorded).map((p) => `${where}: ${p}`),
    );
    assert.deepEqual(problems, []);
  });

  it('uses the metrics the brief names, with their real names', () => {
    const text = everyExpression()
      .map((e) => e.expr)
      .join('\n');
    for (const name of [
      'colloquy_llm_cost_usd_total',
      'colloquy_redis_up',
      'nodejs_eventloop_lag_p99_seconds',
      'process_resident_memory_bytes',
      'colloquy_upstream_fallbacks_total',
      'colloquy_circuit_breaker_state',
      'colloquy_db_pool_connections',
      'colloquy_cache_requests_total',
      'colloquy_llm_time_to_first_token_seconds_bucket',
    ]) {
      assert.ok(text.includes(name), `${name} is used`);
      assert.ok(exported.has(name), `${name} is exported`);
    }
  });

  it('parses: every dashboard and canary-analysis query goes through promtool', (t) => {
    const promtool = requireTool(t, 'promtool', 'prometheus');
    if (!promtool) return;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-promql-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'queries.yml');
    const queries = everyExpression().filter(
      (e) => !e.where.startsWith('recording') && !e.where.startsWith('alert'),
    );
    writeFileSync(
      file,
      toYaml({
        groups: [
          { name: 'queries', rules: queries.map((q, i) => ({ record: `query:check:${i}`, expr: q.expr })) },
        ],
      }),
    );
    const result = run(promtool, ['check', 'rules', file]);
    assertRan(result, `promtool check rules on ${queries.length} dashboard/analysis queries`);
  });
});

describe('Alertmanager (deploy/alertmanager)', () => {
  const config = path.join(DEPLOY, 'alertmanager', 'alertmanager.yml');

  it('passes `amtool check-config`', (t) => {
    const amtool = requireTool(t, 'amtool', 'prometheus-alertmanager');
    if (!amtool) return;
    const result = run(amtool, ['check-config', config]);
    assertRan(result, 'amtool check-config');
    assert.match(result.stdout, /SUCCESS/);
  });

  it('routes P0/P1 to the pager and P2/P3 to tickets (amtool config routes test)', (t) => {
    const amtool = requireTool(t, 'amtool', 'prometheus-alertmanager');
    if (!amtool) return;
    const expected: Record<string, string> = { P0: 'page', P1: 'page', P2: 'ticket', P3: 'ticket' };
    for (const a of alerts) {
      const severity = a.labels!.severity!;
      const result = run(amtool, [
        'config',
        'routes',
        'test',
        `--config.file=${config}`,
        `--verify.receivers=${expected[severity]}`,
        `alertname=${a.alert}`,
        `severity=${severity}`,
        `component=${a.labels!.component}`,
      ]);
      assertRan(result, `routing of ${a.alert} (${severity})`);
    }
  });

  it('inhibits lower severities and the consequences of an outage', () => {
    const am = readYaml<{
      inhibit_rules: { source_matchers: string[]; target_matchers: string[]; equal?: string[] }[];
    }>('deploy/alertmanager/alertmanager.yml');
    const rules = am.inhibit_rules.map((r) => JSON.stringify(r));
    assert.ok(rules.some((r) => r.includes('ColloquyAllInstancesDown')));
    assert.ok(
      am.inhibit_rules.some(
        (r) => r.source_matchers.includes('severity="P1"') && r.equal?.includes('component'),
      ),
    );
    // Alerts named in matchers exist.
    const names = new Set(alerts.map((a) => a.alert!));
    for (const r of am.inhibit_rules) {
      for (const m of [...r.source_matchers, ...r.target_matchers]) {
        const exact = /^alertname="(\w+)"$/.exec(m)?.[1];
        if (exact) assert.ok(names.has(exact), `inhibit rule names unknown alert ${exact}`);
      }
    }
  });
});

describe('Grafana (deploy/grafana)', () => {
  it('provisions the Prometheus datasource the dashboards point at, and the dashboards folder', () => {
    const ds = readYaml<{ datasources: { uid: string; type: string; url: string }[] }>(
      'deploy/grafana/provisioning/datasources/prometheus.yml',
    );
    assert.equal(ds.datasources[0]!.type, 'prometheus');
    assert.equal(ds.datasources[0]!.url, 'http://prometheus:9090');
    const providers = readYaml<{ providers: { options: { path: string } }[] }>(
      'deploy/grafana/provisioning/dashboards/colloquy.yml',
    );
    const compose = readYaml<{ services: { grafana: { volumes: string[] } } }>('compose.yaml');
    const mount = compose.services.grafana.volumes.find((v) => v.startsWith('./deploy/grafana/dashboards:'));
    assert.ok(
      mount?.split(':')[1] === providers.providers[0]!.options.path,
      'the provider reads the mounted dashboards',
    );
    for (const d of dashboards) {
      for (const p of d.panels.filter((p) => p.type !== 'row')) {
        assert.equal(
          p.datasource?.uid,
          ds.datasources[0]!.uid,
          `panel "${p.title}" uses the provisioned datasource`,
        );
      }
    }
  });

  it('has an overview dashboard covering the operator’s questions, by track', () => {
    const overview = dashboards.find((d) => d.uid === 'colloquy-overview');
    assert.ok(overview, 'dashboard uid colloquy-overview');
    const panels = overview.panels.filter((p) => p.type !== 'row');
    const ids = overview.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    for (const p of panels) {
      assert.ok(p.targets?.length, `panel "${p.title}" has queries`);
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the grid`);
    }
    const exprOf = (title: RegExp) =>
      panels
        .filter((p) => title.test(p.title))
        .flatMap((p) => p.targets!.map((t) => t.expr))
        .join('\n');
    const wanted: [RegExp, RegExp][] = [
      [/Requests per second/, /colloquy_http_request_duration_seconds_count/],
      [/5xx ratio/, /status_code=~"5\.\."/],
      [/Latency p50 \/ p95 \/ p99/, /histogram_quantile\(0\.99/],
      [/Time to first token/, /colloquy_llm_time_to_first_token_seconds_bucket/],
      [/Tokens per second by model/, /colloquy_llm_tokens_total/],
      [/Spend per hour by model/, /colloquy_llm_cost_usd_total/],
      [/Cache hit ratio/, /colloquy_cache_requests_total/],
      [/Active streams/, /colloquy_active_streams/],
      [/Limit rejections/, /colloquy_limit_rejections_total/],
      [/Circuit breaker/, /colloquy_circuit_breaker_state/],
      [/Database pool/, /colloquy_db_pool_connections/],
      [/Event-loop lag/, /nodejs_eventloop_lag_p99_seconds/],
      [/Resident memory/, /process_resident_memory_bytes/],
    ];
    for (const [title, metric] of wanted) {
      const expr = exprOf(title);
      assert.match(expr, metric, `a panel ${title} reads ${metric}`);
    }
    // Every Colloquy query can be split by track.
    for (const p of panels) {
      for (const t of p.targets!) {
        if (/colloquy_(?!build_info)|nodejs_|process_/.test(t.expr) && !/colloquy:/.test(t.expr))
          assert.match(t.expr, /track/, `panel "${p.title}" filters or groups by track`);
      }
    }
    assert.ok(overview.templating.list.some((v) => v.name === 'track'));
  });

  it('is valid JSON everywhere (dashboards are loaded as-is by the provider)', () => {
    assert.ok(dashboardFiles.length > 0);
    for (const f of dashboardFiles)
      assert.doesNotThrow(() => JSON.parse(read(`deploy/grafana/dashboards/${f}`)), f);
  });
});
