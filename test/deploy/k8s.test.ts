import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { EnvSchema } from '../../src/config/schema.js';
import { DEPLOY, envDefault, filesUnder, ROOT, read, readYamlDocuments, run, which } from './helpers.js';

/**
 * The Kubernetes manifests. Debian ships neither kustomize nor kubeconform/kubeval, so the overlay is
 * rendered here by a small kustomize subset (exactly the fields the kit uses; any other field fails the
 * test) and checked structurally; when a kubectl with kustomize v4+ is installed, its rendering must
 * agree with ours.
 */
// biome-ignore lint/suspicious/noExplicitAny: parsed Kubernetes YAML, walked by path like kustomize does
type Obj = Record<string, any>;
const K8S = path.join(DEPLOY, 'k8s');
const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'patches', 'labels']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

function kustomize(dir: string): Obj[] {
  const k = parseYaml(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  for (const field of Object.keys(k))
    assert.ok(KNOWN_FIELDS.has(field), `${dir}: unsupported kustomization field ${field}`);
  let objects: Obj[] = [];
  for (const entry of k.resources ?? []) {
    const target = path.join(dir, entry);
    assert.ok(existsSync(target), `${dir}: resource ${entry} exists`);
    objects.push(...(statSync(target).isDirectory() ? kustomize(target) : readYamlDocuments(target)));
  }
  for (const { pairs } of k.labels ?? []) {
    for (const o of objects) o.metadata.labels = { ...o.metadata.labels, ...pairs };
  }
  for (const patch of k.patches ?? []) {
    const targets = objects.filter(
      (o) => o.kind === patch.target.kind && o.metadata.name === patch.target.name,
    );
    assert.equal(targets.length, 1, `patch target ${patch.target.kind}/${patch.target.name}`);
    for (const op of parseYaml(patch.patch) as { op: string; path: string; value?: unknown }[]) {
      assert.ok(['replace', 'add'].includes(op.op), `patch op ${op.op}`);
      const keys = op.path.split('/').slice(1);
      let node = targets[0]!;
      for (const key of keys.slice(0, -1)) node = node[key];
      assert.ok(node, `patch path ${op.path}`);
      if (op.op === 'replace') assert.ok(keys.at(-1)! in node, `patch replaces an existing ${op.path}`);
      node[keys.at(-1)!] = op.value;
    }
  }
  for (const image of k.images ?? []) {
    for (const c of objects.flatMap(containers)) {
      const [name, tag] = splitImage(c.image);
      if (name === image.name) c.image = `${image.newName ?? name}:${image.newTag ?? tag}`;
    }
  }
  if (k.namespace) {
    objects = objects.map((o) =>
      CLUSTER_SCOPED.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace: k.namespace } },
    );
  }
  return objects;
}

const splitImage = (image: string): [string, string | undefined] => {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, undefined];
};
const podSpec = (o: Obj): Obj | undefined => o.spec?.template?.spec;
const containers = (o: Obj): Obj[] => podSpec(o)?.containers ?? [];
const find = (objects: Obj[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Route paths the app serves, from the route definitions in src/features. */
const appRoutes = new Set(
  filesUnder(path.join(ROOT, 'src', 'features'), /^(?!.*\.test\.ts$).*\.ts$/).flatMap((f) =>
    [...readFileSync(f, 'utf8').matchAll(/^\s+'(\/[^']*)',$/gm)].map((m) => m[1]!),
  ),
);

const base = kustomize(path.join(K8S, 'base'));
const production = kustomize(path.join(K8S, 'overlays', 'production'));

describe('Kubernetes manifests (deploy/k8s)', () => {
  it('every manifest is YAML with apiVersion, kind and metadata.name', () => {
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

  it('base: a Deployment of 3 with liveness/readiness/startup probes on routes the app serves', () => {
    assert.ok(
      appRoutes.has('/health/live') && appRoutes.has('/health/ready'),
      'found the health routes in src/',
    );
    const deployment = find(base, 'Deployment', 'colloquy');
    assert.equal(deployment.spec.replicas, 3);
    assert.deepEqual(deployment.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
    const c = containers(deployment)[0]!;
    assert.equal(c.livenessProbe.httpGet.path, '/health/live');
    assert.equal(c.readinessProbe.httpGet.path, '/health/ready');
    assert.ok(c.startupProbe?.httpGet?.path, 'startupProbe');
    for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
      assert.ok(appRoutes.has(probe.httpGet.path), `${probe.httpGet.path} is a route of the app`);
      assert.equal(probe.httpGet.port, 'http');
    }
    const port = c.ports.find((p: Obj) => p.name === 'http');
    assert.equal(port.containerPort, Number(envDefault('PORT')));
    assert.deepEqual(c.args, ['serve']);
  });

  it('base: hardened pods (non-root, read-only root filesystem, no privilege escalation, resources)', () => {
    for (const o of [find(base, 'Deployment', 'colloquy'), find(base, 'Job', 'colloquy-migrate')]) {
      const spec = podSpec(o)!;
      assert.equal(spec.securityContext.runAsNonRoot, true);
      assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
      assert.equal(spec.automountServiceAccountToken, false);
      for (const c of containers(o)) {
        assert.equal(c.securityContext.readOnlyRootFilesystem, true);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
        assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
        assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
        assert.ok(
          c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'),
          'a writable /tmp',
        );
      }
    }
  });

  it('base: drains before SIGKILL (grace period > preStop sleep + SHUTDOWN_TIMEOUT)', () => {
    const deployment = find(base, 'Deployment', 'colloquy');
    const config = find(base, 'ConfigMap', 'colloquy-config');
    const c = containers(deployment)[0]!;
    const sleep = Number(c.lifecycle.preStop.exec.command.at(-1));
    const drain = Number(config.data.SHUTDOWN_TIMEOUT);
    assert.ok(sleep > 0 && drain > 0);
    assert.ok(
      podSpec(deployment)!.terminationGracePeriodSeconds > sleep + drain,
      `terminationGracePeriodSeconds ${podSpec(deployment)!.terminationGracePeriodSeconds} > ${sleep} + ${drain}`,
    );
  });

  it('base: configuration is Colloquy variables only; the Secret example names them too', () => {
    const config = find(base, 'ConfigMap', 'colloquy-config');
    for (const key of Object.keys(config.data))
      assert.ok(key in EnvSchema.properties, `ConfigMap key ${key}`);
    assert.equal(config.data.COLLOQUY_ENV, 'production');
    const [secret] = readYamlDocuments(path.join(K8S, 'base', 'secret.example.yaml')) as Obj[];
    for (const key of Object.keys(secret!.stringData))
      assert.ok(key in EnvSchema.properties, `Secret key ${key}`);
    assert.ok(!base.some((o) => o.kind === 'Secret'), 'the example Secret is never applied');
    const c = containers(find(base, 'Deployment', 'colloquy'))[0]!;
    assert.deepEqual(
      c.envFrom.map((e: Obj) => e.configMapRef?.name ?? e.secretRef?.name),
      ['colloquy-config', secret!.metadata.name],
    );
    const track = c.env.find((e: Obj) => e.name === 'COLLOQUY_TRACK');
    assert.equal(track.valueFrom.fieldRef.fieldPath, "metadata.labels['track']");
  });

  it('base: Service, HPA, PDB, NetworkPolicy and Ingress select and target what exists', () => {
    const deployment = find(base, 'Deployment', 'colloquy');
    const podLabels = deployment.spec.template.metadata.labels;
    assert.ok(matches(deployment.spec.selector.matchLabels, podLabels));
    const service = find(base, 'Service', 'colloquy');
    assert.ok(matches(service.spec.selector, podLabels));
    assert.equal(service.spec.ports[0].targetPort, 'http');
    const hpa = find(base, 'HorizontalPodAutoscaler', 'colloquy');
    assert.equal(hpa.spec.scaleTargetRef.kind, 'Deployment');
    assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas);
    assert.ok(hpa.spec.metrics.some((m: Obj) => m.resource?.name === 'cpu'));
    assert.match(read('deploy/k8s/base/hpa.yaml'), /colloquy_active_streams/, 'the custom-metric note');
    assert.ok(matches(find(base, 'PodDisruptionBudget', 'colloquy').spec.selector.matchLabels, podLabels));
    const policy = find(base, 'NetworkPolicy', 'colloquy');
    assert.ok(matches(policy.spec.podSelector.matchLabels, podLabels));
    assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
    const ingress = find(base, 'Ingress', 'colloquy');
    const a = ingress.metadata.annotations;
    assert.equal(a['nginx.ingress.kubernetes.io/proxy-buffering'], 'off');
    assert.ok(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 3600);
    assert.ok(!/non_idempotent/.test(a['nginx.ingress.kubernetes.io/proxy-next-upstream'] ?? ''));
    const body = /^(\d+)m$/.exec(a['nginx.ingress.kubernetes.io/proxy-body-size'])?.[1];
    assert.equal(
      Number(body) * 1024 * 1024,
      Number(find(base, 'ConfigMap', 'colloquy-config').data.MAX_BODY_SIZE),
    );
    assert.equal(ingress.spec.rules[0].http.paths[0].backend.service.name, 'colloquy');
  });

  it('base: a migration Job runs `migrate up` before the upgrade (expand/contract documented)', () => {
    const job = find(base, 'Job', 'colloquy-migrate');
    assert.deepEqual(containers(job)[0]!.args, ['migrate', 'up']);
    assert.equal(job.metadata.annotations['argocd.argoproj.io/hook'], 'PreSync');
    assert.match(job.metadata.annotations['helm.sh/hook'], /pre-upgrade/);
    assert.equal(podSpec(job)!.restartPolicy, 'Never');
    assert.match(read('docs/deployment.md'), /expand\/contract/i);
  });

  it('production: an Argo Rollouts canary 5 → 25 → 50 → 100 % with pauses and background analysis', () => {
    const rollout = find(production, 'Rollout', 'colloquy');
    const canary = rollout.spec.strategy.canary;
    const weights = canary.steps.filter((s: Obj) => 'setWeight' in s).map((s: Obj) => s.setWeight);
    assert.deepEqual(weights, [5, 25, 50, 100]);
    canary.steps.forEach((step: Obj, i: number) => {
      if ('setWeight' in step && step.setWeight < 100)
        assert.ok(canary.steps[i + 1]?.pause, `a pause after ${step.setWeight} %`);
    });
    assert.equal(rollout.spec.workloadRef.name, 'colloquy');
    find(production, 'Deployment', rollout.spec.workloadRef.name);
    assert.equal(find(production, 'Deployment', 'colloquy').spec.replicas, 0, 'the Rollout owns the pods');
    find(production, 'Service', canary.canaryService);
    find(production, 'Service', canary.stableService);
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
    for (const o of production) {
      if (!CLUSTER_SCOPED.has(o.kind))
        assert.equal(o.metadata.namespace, 'colloquy', `${o.kind}/${o.metadata.name} namespace`);
    }
  });

  it('production: the analysis compares canary with stable on errors, p95 latency, TTFT and fallbacks', () => {
    const template = find(production, 'AnalysisTemplate', 'colloquy-canary-analysis');
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
    // The ServiceMonitor feeds the `track` label from the live pod label.
    const monitor = find(production, 'ServiceMonitor', 'colloquy');
    assert.ok(
      matches(monitor.spec.selector.matchLabels, find(production, 'Service', 'colloquy').metadata.labels),
    );
    assert.equal(monitor.spec.endpoints[0].relabelings[0].targetLabel, 'track');
  });

  it('renders with `kubectl kustomize` the same way (when a kubectl with kustomize v4+ is installed)', (t) => {
    const kubectl = which('kubectl');
    const version = kubectl ? run(kubectl, ['version', '--client']).stdout : '';
    const major = Number(/Kustomize Version: v(\d+)/.exec(version)?.[1] ?? 0);
    if (!kubectl || major < 4) {
      // Not in Debian (kubernetes-client ships kubectl 1.20 with kustomize v2, which predates `labels`
      // and `patches`): the subset renderer above is the check, in CI too.
      const why = kubectl ? `kubectl has kustomize v${major || '?'} (< v4)` : 'kubectl is not installed';
      console.log(
        `# skipping "${t.name}": ${why}; the manifests were rendered and checked by the test itself`,
      );
      t.skip(why);
      return;
    }
    for (const [dir, ours] of [
      ['base', base],
      ['overlays/production', production],
    ] as const) {
      const result = run(kubectl, ['kustomize', path.join(K8S, dir)]);
      assert.equal(result.code, 0, result.stderr);
      const theirs = parseAllDocuments(result.stdout).map((d) => d.toJS() as Obj);
      const key = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      assert.deepEqual(theirs.map(key).sort(), ours.map(key).sort(), `${dir}: the same objects`);
      for (const o of theirs) {
        const mine = ours.find((x) => key(x) === key(o))!;
        assert.deepEqual(
          containers(o).map((c) => c.image),
          containers(mine).map((c) => c.image),
          `${key(o)} images`,
        );
        assert.deepEqual(o.spec?.replicas, mine.spec?.replicas, `${key(o)} replicas`);
        assert.deepEqual(o.spec?.scaleTargetRef, mine.spec?.scaleTargetRef, `${key(o)} scaleTargetRef`);
        assert.deepEqual(o.spec?.rules, mine.spec?.rules, `${key(o)} rules`);
        assert.deepEqual(o.metadata.labels, mine.metadata.labels, `${key(o)} labels`);
      }
    }
  });

  it('has no file the kustomizations forget', () => {
    const listed = new Set<string>();
    for (const dir of ['base', 'overlays/production']) {
      const k = parseYaml(read(`deploy/k8s/${dir}/kustomization.yaml`)) as Obj;
      for (const r of k.resources) listed.add(path.join(K8S, dir, r));
    }
    for (const dir of ['base', 'overlays/production']) {
      for (const f of readdirSync(path.join(K8S, dir))) {
        if (f === 'kustomization.yaml' || f === 'secret.example.yaml') continue;
        assert.ok(listed.has(path.join(K8S, dir, f)), `${dir}/${f} is listed in its kustomization`);
      }
    }
  });
});
