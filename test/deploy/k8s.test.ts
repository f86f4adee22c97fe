import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { EnvSchema } from '../../src/config/schema.js';
import { CI, DEPLOY, envDefault, filesUnder, ROOT, read, readYamlDocuments, run, which } from './helpers.js';
import { schemaProblems, typeProblems } from './k8s-schema.js';

/**
 * The Kubernetes manifests as a cluster receives them: rendered by `kubectl kustomize` (kubectl's bundled
 * Kustomize), every rendered object validated against its Kubernetes or CRD schema (k8s-schema.ts), then
 * checked for what a schema cannot see: probes on routes the app serves, drain timing, hardening,
 * selectors that select the pods, the migration hook and the canary.
 */
// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes YAML, walked by path
type Obj = Record<string, any>;
const K8S = path.join(DEPLOY, 'k8s');
const KUSTOMIZATIONS = { base: 'base', production: 'overlays/production' } as const;
type Rendering = Record<keyof typeof KUSTOMIZATIONS, Obj[]>;
const CLUSTER_SCOPED = new Set(['Namespace']);
const IMAGE = 'ghcr.io/your-org/colloquy:0.1.0';

/** kubectl with Kustomize v5 (kubectl 1.27+: the `labels` and `patches` fields the kit uses), or why not. */
function findKustomize(): { kubectl: string } | { missing: string } {
  const kubectl = which('kubectl');
  if (!kubectl) return { missing: 'kubectl is not installed' };
  const version = run(kubectl, ['version', '--client']).stdout;
  const major = Number(/Kustomize Version: v(\d+)/.exec(version)?.[1] ?? 0);
  if (major < 5) return { missing: `${kubectl} bundles Kustomize v${major || '?'}, not v5+` };
  return { kubectl };
}

let rendering: Rendering | undefined;
/** The kustomizations rendered by kubectl; without it the test is skipped, and fails in CI (CI=true). */
function rendered(t: TestContext): Rendering | undefined {
  if (rendering) return rendering;
  const tool = findKustomize();
  if ('missing' in tool) {
    const why = `${tool.missing} (kubectl 1.27+ renders deploy/k8s; see .ci/install-deploy-tools)`;
    if (CI) assert.fail(`${why}: required when CI=true`);
    console.log(`# skipping "${t.name}": ${why}`);
    t.skip(why);
    return undefined;
  }
  const render = (dir: string) => {
    const result = run(tool.kubectl, ['kustomize', path.join(K8S, dir)]);
    assert.equal(result.code, 0, `kubectl kustomize ${dir}:\n${result.stderr}`);
    return parseAllDocuments(result.stdout).map((doc) => {
      assert.deepEqual(doc.errors, [], `kubectl kustomize ${dir} printed YAML`);
      return doc.toJS() as Obj;
    });
  };
  rendering = { base: render(KUSTOMIZATIONS.base), production: render(KUSTOMIZATIONS.production) };
  return rendering;
}

const podSpec = (o: Obj): Obj | undefined => o.spec?.template?.spec;
const containers = (o: Obj): Obj[] => podSpec(o)?.containers ?? [];
const find = (objects: Obj[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};
const identity = (o: Obj) => `${o.kind}/${o.metadata.name}`;
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const exampleSecret = () => readYamlDocuments(path.join(K8S, 'base', 'secret.example.yaml'))[0] as Obj;

/** Route paths the app serves, from the route definitions in src/features and src/plugins (/metrics). */
const appRoutes = new Set(
  ['features', 'plugins']
    .flatMap((dir) => filesUnder(path.join(ROOT, 'src', dir), /^(?!.*\.test\.ts$).*\.ts$/))
    .flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/^\s+'(\/[^']*)',$/gm)].map((m) => m[1]!)),
);

/** Pod hardening the namespace's `restricted` Pod Security profile enforces, plus our own. */
function assertHardened(o: Obj) {
  const spec = podSpec(o)!;
  assert.equal(spec.securityContext.runAsNonRoot, true, `${identity(o)} runAsNonRoot`);
  assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault', `${identity(o)} seccomp`);
  assert.equal(spec.automountServiceAccountToken, false, `${identity(o)} no API token`);
  for (const c of containers(o)) {
    const where = `${identity(o)} container ${c.name}`;
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${where}: read-only root filesystem`);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, `${where}: no privilege escalation`);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], `${where}: capabilities dropped`);
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory, `${where}: requests`);
    assert.ok(c.resources.limits.memory, `${where}: a memory limit`);
    assert.ok(
      c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'),
      `${where}: a writable /tmp`,
    );
  }
}

describe('Kubernetes manifests (deploy/k8s)', () => {
  it('every manifest file is YAML with apiVersion, kind and metadata.name', () => {
    const files = filesUnder(K8S, /\.ya?ml$/);
    assert.ok(files.length >= 14);
    for (const file of files) {
      for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
        assert.deepEqual(doc.errors, [], file);
        const o = doc.toJS() as Obj;
        assert.ok(o.apiVersion && o.kind, `${file}: apiVersion and kind`);
        if (o.kind !== 'Kustomization') assert.ok(o.metadata?.name, `${file}: metadata.name`);
      }
    }
  });

  it('has no file the kustomizations forget', () => {
    const listed = new Set<string>();
    for (const dir of Object.values(KUSTOMIZATIONS)) {
      const k = parseYaml(read(`deploy/k8s/${dir}/kustomization.yaml`)) as Obj;
      for (const r of k.resources) listed.add(path.join(K8S, dir, r));
    }
    for (const dir of Object.values(KUSTOMIZATIONS)) {
      for (const f of readdirSync(path.join(K8S, dir))) {
        if (f === 'kustomization.yaml' || f === 'secret.example.yaml') continue;
        assert.ok(listed.has(path.join(K8S, dir, f)), `${dir}/${f} is listed in its kustomization`);
      }
    }
  });

  it('`kubectl kustomize` renders the base and the production overlay: objects, namespace, image', (t) => {
    const r = rendered(t);
    if (!r) return;
    const baseObjects = [
      'ConfigMap/colloquy-config',
      'Deployment/colloquy',
      'HorizontalPodAutoscaler/colloquy',
      'Ingress/colloquy',
      'Job/colloquy-migrate',
      'NetworkPolicy/colloquy',
      'PodDisruptionBudget/colloquy',
      'Service/colloquy',
      'ServiceAccount/colloquy',
    ];
    assert.deepEqual(r.base.map(identity).sort(), baseObjects);
    assert.deepEqual(
      r.production.map(identity).sort(),
      [
        ...baseObjects,
        'AnalysisTemplate/colloquy-canary-analysis',
        'Namespace/colloquy',
        'Rollout/colloquy',
        'Service/colloquy-canary',
        'Service/colloquy-stable',
        'ServiceMonitor/colloquy',
      ].sort(),
    );
    for (const o of r.production) {
      const namespace = CLUSTER_SCOPED.has(o.kind) ? undefined : 'colloquy';
      assert.equal(o.metadata.namespace, namespace, `${identity(o)} namespace`);
      assert.equal(o.metadata.labels['app.kubernetes.io/part-of'], 'colloquy', `${identity(o)} labels`);
    }
    for (const o of [...r.base, ...r.production]) {
      for (const c of containers(o)) assert.equal(c.image, IMAGE, `${identity(o)} image`);
    }
  });

  it('every rendered object and the example Secret validate against their Kubernetes/CRD schemas', (t) => {
    const r = rendered(t);
    if (!r) return;
    for (const [what, objects] of [
      ['kubectl kustomize deploy/k8s/base', r.base],
      ['kubectl kustomize deploy/k8s/overlays/production', r.production],
      ['deploy/k8s/base/secret.example.yaml', [exampleSecret()]],
    ] as const) {
      assert.deepEqual(objects.flatMap(schemaProblems), [], `${what}: JSON schema`);
      assert.deepEqual(typeProblems(objects), [], `${what}: no unknown or mistyped field`);
    }
  });

  it('schema validation rejects broken objects and names the field', (t) => {
    const r = rendered(t);
    if (!r) return;
    const container = (o: Obj) => containers(o)[0]!;
    // [kind/name, the change, the validation that must refuse it, what it must say]
    const cases: [string, (o: Obj) => void, 'schema' | 'types', RegExp][] = [
      [
        'Deployment/colloquy',
        (o) => {
          container(o).ports[0].containerPort = '8000';
        },
        'schema',
        /^apps\/v1\/Deployment colloquy: \/spec\/template\/spec\/containers\/0\/ports\/0\/containerPort must be integer$/m,
      ],
      [
        'Deployment/colloquy',
        (o) => {
          delete podSpec(o)!.containers;
        },
        'schema',
        /^apps\/v1\/Deployment colloquy: \/spec\/template\/spec must have required property containers$/m,
      ],
      [
        'Deployment/colloquy',
        (o) => {
          container(o).resources.limits.memory = 'a lot';
        },
        'schema',
        /\/spec\/template\/spec\/containers\/0\/resources\/limits\/memory must match format "quantity"/,
      ],
      // A misspelt field: the JSON schema allows unknown fields; `kubectl apply` (strict field
      // validation) and the models' interfaces do not.
      [
        'Deployment/colloquy',
        (o) => {
          container(o).livenesProbe = container(o).livenessProbe;
        },
        'types',
        /^apps\/v1\/Deployment colloquy: \/spec\/template\/spec\/containers\/0\/livenesProbe .*'"livenesProbe"' does not exist in type 'IContainer'/m,
      ],
      [
        'Deployment/colloquy',
        (o) => {
          container(o).ports[0].containerPort = '8000';
        },
        'types',
        /\/spec\/template\/spec\/containers\/0\/ports\/0\/containerPort Type 'string' is not assignable to type 'number'/,
      ],
      [
        'Service/colloquy',
        (o) => {
          o.spec.type = 'ClusterIp';
        },
        'schema',
        /^v1\/Service colloquy: \/spec\/type must be equal to one of the allowed values$/m,
      ],
      [
        'HorizontalPodAutoscaler/colloquy',
        (o) => {
          delete o.spec.maxReplicas;
        },
        'schema',
        /^autoscaling\/v2\/HorizontalPodAutoscaler colloquy: \/spec must have required property maxReplicas$/m,
      ],
      [
        'Rollout/colloquy',
        (o) => {
          o.spec.strategy.canary.steps[0].setWeight = '5%';
        },
        'schema',
        /^argoproj\.io\/v1alpha1\/Rollout colloquy: \/spec\/strategy\/canary\/steps\/0\/setWeight must be integer$/m,
      ],
      [
        'Rollout/colloquy',
        (o) => {
          o.spec.strategy.canary.trafficRoutng = o.spec.strategy.canary.trafficRouting;
        },
        'types',
        /\/spec\/strategy\/canary\/trafficRoutng .*does not exist in type 'ICanaryStrategy'/,
      ],
      [
        'ServiceMonitor/colloquy',
        (o) => {
          o.spec.endpoints[0].interval = 'every 15 seconds';
        },
        'schema',
        /^monitoring\.coreos\.com\/v1\/ServiceMonitor colloquy: \/spec\/endpoints\/0\/interval must match pattern/m,
      ],
    ];
    for (const [object, change, validation, expected] of cases) {
      const [kind, name] = object.split('/') as [string, string];
      // Valid as rendered (the test above): the problem comes from the change.
      const o = structuredClone(find(r.production, kind, name));
      change(o);
      const problems = validation === 'schema' ? schemaProblems(o) : typeProblems([o]);
      assert.match(problems.join('\n'), expected, `${validation} check of the changed ${object}`);
    }
    // A kind without a model is an error, not a silent pass.
    const widget = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
    for (const problems of [schemaProblems(widget), typeProblems([widget])])
      assert.match(problems.join(), /^example\.com\/v1\/Widget: no schema for this apiVersion\/kind/);
  });

  it('base: a Deployment of 3 with liveness/readiness/startup probes on routes the app serves', (t) => {
    const r = rendered(t);
    if (!r) return;
    assert.ok(
      appRoutes.has('/health/live') && appRoutes.has('/health/ready'),
      'found the health routes in src/',
    );
    const deployment = find(r.base, 'Deployment', 'colloquy');
    assert.equal(deployment.spec.replicas, 3);
    assert.deepEqual(deployment.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
    const c = containers(deployment)[0]!;
    assert.equal(c.livenessProbe.httpGet.path, '/health/live');
    assert.equal(c.readinessProbe.httpGet.path, '/health/ready');
    assert.equal(c.startupProbe?.httpGet?.path, '/health/live');
    for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
      assert.ok(appRoutes.has(probe.httpGet.path), `${probe.httpGet.path} is a route of the app`);
      assert.equal(probe.httpGet.port, 'http');
    }
    const port = c.ports.find((p: Obj) => p.name === 'http');
    assert.equal(port.containerPort, Number(envDefault('PORT')));
    assert.equal(
      port.containerPort,
      Number(find(r.base, 'ConfigMap', 'colloquy-config').data.PORT),
      'the app listens where the probes knock',
    );
    assert.deepEqual(c.args, ['serve']);
  });

  it('base and production: hardened pods (non-root, read-only root filesystem, no privilege escalation, resources)', (t) => {
    const r = rendered(t);
    if (!r) return;
    for (const objects of [r.base, r.production]) {
      assertHardened(find(objects, 'Deployment', 'colloquy'));
      assertHardened(find(objects, 'Job', 'colloquy-migrate'));
    }
    const namespace = find(r.production, 'Namespace', 'colloquy');
    assert.equal(namespace.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  });

  it('base and production: drain before SIGKILL (grace period > preStop sleep + SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT)', (t) => {
    const r = rendered(t);
    if (!r) return;
    for (const objects of [r.base, r.production]) {
      const deployment = find(objects, 'Deployment', 'colloquy');
      const config = find(objects, 'ConfigMap', 'colloquy-config').data;
      const preStop = containers(deployment)[0]!.lifecycle.preStop.exec.command;
      assert.equal(preStop[0], 'sleep');
      const sleep = Number(preStop.at(-1));
      const delay = Number(config.SHUTDOWN_DELAY ?? envDefault('SHUTDOWN_DELAY'));
      const drain = Number(config.SHUTDOWN_TIMEOUT ?? envDefault('SHUTDOWN_TIMEOUT'));
      assert.ok(sleep > 0 && drain > 0, `preStop sleep ${sleep}, SHUTDOWN_TIMEOUT ${drain}`);
      const grace = podSpec(deployment)!.terminationGracePeriodSeconds;
      assert.ok(
        grace > sleep + delay + drain,
        `terminationGracePeriodSeconds ${grace} > ${sleep} + ${delay} + ${drain}`,
      );
    }
  });

  it('base: configuration is Colloquy variables only; the Secret example names them too', (t) => {
    const r = rendered(t);
    if (!r) return;
    const config = find(r.base, 'ConfigMap', 'colloquy-config');
    for (const key of Object.keys(config.data))
      assert.ok(key in EnvSchema.properties, `ConfigMap key ${key}`);
    assert.equal(config.data.COLLOQUY_ENV, 'production');
    const secret = exampleSecret();
    for (const key of Object.keys(secret.stringData))
      assert.ok(key in EnvSchema.properties, `Secret key ${key}`);
    assert.ok(!r.production.some((o) => o.kind === 'Secret'), 'the example Secret is never applied');
    const c = containers(find(r.base, 'Deployment', 'colloquy'))[0]!;
    assert.deepEqual(
      c.envFrom.map((e: Obj) => e.configMapRef?.name ?? e.secretRef?.name),
      ['colloquy-config', secret.metadata.name],
    );
    const track = c.env.find((e: Obj) => e.name === 'COLLOQUY_TRACK');
    assert.equal(track.valueFrom.fieldRef.fieldPath, "metadata.labels['track']");
  });

  it('base: Service, HPA, PDB, NetworkPolicy and Ingress select and target what exists', (t) => {
    const r = rendered(t);
    if (!r) return;
    const deployment = find(r.base, 'Deployment', 'colloquy');
    const podLabels = deployment.spec.template.metadata.labels;
    const containerPorts = new Set(containers(deployment)[0]!.ports.map((p: Obj) => p.name));
    assert.ok(matches(deployment.spec.selector.matchLabels, podLabels));
    const service = find(r.base, 'Service', 'colloquy');
    assert.ok(matches(service.spec.selector, podLabels), 'the Service selects the pods');
    assert.ok(containerPorts.has(service.spec.ports[0].targetPort), 'the Service targets a container port');
    const hpa = find(r.base, 'HorizontalPodAutoscaler', 'colloquy');
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'colloquy',
    });
    assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas);
    assert.ok(hpa.spec.metrics.some((m: Obj) => m.resource?.name === 'cpu'));
    assert.match(read('deploy/k8s/base/hpa.yaml'), /colloquy_active_streams/, 'the custom-metric note');
    const pdb = find(r.base, 'PodDisruptionBudget', 'colloquy');
    assert.ok(matches(pdb.spec.selector.matchLabels, podLabels), 'the PDB selects the pods');
    assert.ok(pdb.spec.maxUnavailable < hpa.spec.minReplicas, 'a drain always leaves pods serving');
    const policy = find(r.base, 'NetworkPolicy', 'colloquy');
    assert.ok(matches(policy.spec.podSelector.matchLabels, podLabels));
    assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
    for (const rule of policy.spec.ingress)
      for (const p of rule.ports)
        assert.ok(containerPorts.has(p.port), `NetworkPolicy admits port ${p.port}`);
    const ingress = find(r.base, 'Ingress', 'colloquy');
    const a = ingress.metadata.annotations;
    assert.equal(a['nginx.ingress.kubernetes.io/proxy-buffering'], 'off');
    assert.ok(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 3600);
    assert.ok(!/non_idempotent/.test(a['nginx.ingress.kubernetes.io/proxy-next-upstream'] ?? ''));
    const body = /^(\d+)m$/.exec(a['nginx.ingress.kubernetes.io/proxy-body-size'])?.[1];
    assert.equal(
      Number(body) * 1024 * 1024,
      Number(find(r.base, 'ConfigMap', 'colloquy-config').data.MAX_BODY_SIZE),
    );
    const backend = ingress.spec.rules[0].http.paths[0].backend.service;
    assert.equal(backend.name, 'colloquy');
    assert.ok(
      service.spec.ports.some((p: Obj) => p.name === backend.port.name),
      'the Ingress targets a Service port',
    );
  });

  it('base: a migration Job runs `migrate up` with the same image and config before the upgrade', (t) => {
    const r = rendered(t);
    if (!r) return;
    for (const objects of [r.base, r.production]) {
      const job = find(objects, 'Job', 'colloquy-migrate');
      const migrate = containers(job)[0]!;
      const app = containers(find(objects, 'Deployment', 'colloquy'))[0]!;
      assert.deepEqual(migrate.args, ['migrate', 'up']);
      assert.equal(migrate.image, app.image, 'migrates with the version about to roll out');
      assert.deepEqual(migrate.envFrom, app.envFrom, 'against the database the app uses');
      // Argo CD runs PreSync hooks (and Helm pre-upgrade hooks) to completion before the rollout starts.
      assert.equal(job.metadata.annotations['argocd.argoproj.io/hook'], 'PreSync');
      assert.equal(job.metadata.annotations['argocd.argoproj.io/hook-delete-policy'], 'BeforeHookCreation');
      assert.match(job.metadata.annotations['helm.sh/hook'], /pre-upgrade/);
      assert.equal(podSpec(job)!.restartPolicy, 'Never');
      assert.ok(job.spec.backoffLimit <= 3 && job.spec.activeDeadlineSeconds > 0, 'a stuck migration ends');
    }
    assert.match(read('docs/deployment.md'), /expand\/contract/i);
  });

  it('production: an Argo Rollouts canary 5 → 25 → 50 → 100 % with pauses and background analysis', (t) => {
    const r = rendered(t);
    if (!r) return;
    const production = r.production;
    const rollout = find(production, 'Rollout', 'colloquy');
    const canary = rollout.spec.strategy.canary;
    const weights = canary.steps.filter((s: Obj) => 'setWeight' in s).map((s: Obj) => s.setWeight);
    assert.deepEqual(weights, [5, 25, 50, 100]);
    canary.steps.forEach((step: Obj, i: number) => {
      if ('setWeight' in step && step.setWeight < 100)
        assert.ok(canary.steps[i + 1]?.pause, `a pause after ${step.setWeight} %`);
    });
    assert.deepEqual(rollout.spec.workloadRef, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'colloquy',
    });
    const deployment = find(production, 'Deployment', 'colloquy');
    assert.equal(deployment.spec.replicas, 0, 'the Rollout owns the pods');
    // Everything that selects pods selects the Rollout's, which come from the Deployment's template.
    const podLabels = deployment.spec.template.metadata.labels;
    assert.ok(matches(rollout.spec.selector.matchLabels, podLabels), 'the Rollout selector');
    for (const name of [canary.canaryService, canary.stableService, 'colloquy'])
      assert.ok(matches(find(production, 'Service', name).spec.selector, podLabels), `Service/${name}`);
    const pdb = find(production, 'PodDisruptionBudget', 'colloquy');
    assert.ok(matches(pdb.spec.selector.matchLabels, podLabels), 'the PDB selects the Rollout’s pods');
    const policy = find(production, 'NetworkPolicy', 'colloquy');
    assert.ok(matches(policy.spec.podSelector.matchLabels, podLabels), 'the NetworkPolicy too');
    find(production, 'Ingress', canary.trafficRouting.nginx.stableIngress);
    assert.equal(
      find(production, 'Ingress', 'colloquy').spec.rules[0].http.paths[0].backend.service.name,
      canary.stableService,
    );
    assert.equal(canary.canaryMetadata.labels.track, 'canary');
    assert.equal(canary.stableMetadata.labels.track, 'stable');
    const hpa = find(production, 'HorizontalPodAutoscaler', 'colloquy');
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: 'argoproj.io/v1alpha1',
      kind: 'Rollout',
      name: 'colloquy',
    });
    // The analysis template exists and receives every argument it needs.
    const templateName = canary.analysis.templates[0].templateName;
    const template = find(production, 'AnalysisTemplate', templateName);
    const given = new Set(canary.analysis.args.map((a: Obj) => a.name));
    for (const arg of template.spec.args)
      assert.ok('value' in arg || given.has(arg.name), `argument ${arg.name}`);
    const namespaceArg = canary.analysis.args.find((a: Obj) => a.name === 'namespace');
    assert.equal(
      namespaceArg?.value,
      rollout.metadata.namespace,
      'the analysis queries the Rollout’s namespace',
    );
  });

  it('production: the analysis compares canary with stable on errors, p95 latency, TTFT and fallbacks', (t) => {
    const r = rendered(t);
    if (!r) return;
    const template = find(r.production, 'AnalysisTemplate', 'colloquy-canary-analysis');
    const metrics: Obj[] = template.spec.metrics;
    const byName = new Map(metrics.map((m) => [m.name, m]));
    const query = (name: string) => String(byName.get(name)?.provider?.prometheus?.query ?? '');
    assert.match(query('error-ratio'), /track="canary"/);
    assert.match(query('error-ratio'), /status_code=~"5\.\."/);
    assert.match(String(byName.get('error-ratio')!.successCondition), /<= 0\.01/);
    for (const name of ['p95-latency-vs-stable', 'ttft-vs-stable', 'fallback-ratio-vs-stable']) {
      assert.match(query(name), /track="canary"/, `${name} reads the canary`);
      assert.match(query(name), /track="stable"/, `${name} compares with stable`);
    }
    assert.match(
      query('p95-latency-vs-stable'),
      /histogram_quantile\(0\.95, .*colloquy_http_request_duration_seconds_bucket/s,
    );
    assert.match(query('ttft-vs-stable'), /colloquy_llm_time_to_first_token_seconds_bucket/);
    assert.match(query('fallback-ratio-vs-stable'), /colloquy_upstream_fallbacks_total/);
    for (const m of metrics) {
      assert.ok(m.successCondition, `${m.name}: successCondition`);
      assert.equal(m.failureLimit, 0, `${m.name}: one failed measurement aborts`);
      assert.match(m.provider.prometheus.address, /\{\{args\.prometheus-address\}\}/);
    }
    // The ServiceMonitor scrapes the pods behind the main Service, with the token the Secret holds, and
    // feeds the `track` label from the live pod label.
    const monitor = find(r.production, 'ServiceMonitor', 'colloquy');
    const service = find(r.production, 'Service', 'colloquy');
    assert.ok(matches(monitor.spec.selector.matchLabels, service.metadata.labels));
    const endpoint = monitor.spec.endpoints[0];
    assert.ok(
      service.spec.ports.some((p: Obj) => p.name === endpoint.port),
      'scrapes a Service port',
    );
    assert.equal(endpoint.path, '/metrics');
    assert.ok(appRoutes.has('/metrics'), '/metrics is a route of the app');
    assert.ok(
      endpoint.authorization.credentials.key in exampleSecret().stringData,
      'the token is in the Secret',
    );
    assert.equal(endpoint.relabelings[0].targetLabel, 'track');
  });
});
