import { fileURLToPath } from 'node:url';
import ValidationError from '@kubernetes-models/validate/runtime/validation_error';
import ts from 'typescript';

/**
 * Schema validation of Kubernetes objects, what kubeconform -strict does (Debian ships no such binary).
 * The models of `kubernetes-models` are generated from the Kubernetes OpenAPI schema (and, for Argo
 * Rollouts and prometheus-operator, from their CRDs' schemas): each model validates an object with its
 * JSON schema, and its TypeScript interface lists every field, which catches what the JSON schema lets
 * through (it allows unknown fields) but `kubectl apply` rejects: a misspelt field.
 * Every object must have a model here: an apiVersion/kind without one is an error, never a pass.
 */
const MODULES: Record<string, string> = {
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Namespace': 'kubernetes-models/v1/Namespace',
  'v1/Secret': 'kubernetes-models/v1/Secret',
  'v1/Service': 'kubernetes-models/v1/Service',
  'v1/ServiceAccount': 'kubernetes-models/v1/ServiceAccount',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  'batch/v1/Job': 'kubernetes-models/batch/v1/Job',
  'networking.k8s.io/v1/Ingress': 'kubernetes-models/networking.k8s.io/v1/Ingress',
  'networking.k8s.io/v1/NetworkPolicy': 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'argoproj.io/v1alpha1/AnalysisTemplate':
    '@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/AnalysisTemplate',
  'argoproj.io/v1alpha1/Rollout': '@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/Rollout',
  'monitoring.coreos.com/v1/ServiceMonitor':
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
};

type KubernetesObject = Record<string, unknown> & { apiVersion?: unknown; kind?: unknown };
type ModelClass = new (data: unknown) => { validate(): void };

const typeOf = (o: KubernetesObject) => `${o.apiVersion}/${o.kind}`;
const name = (o: KubernetesObject) => (o.metadata as { name?: string } | undefined)?.name;
const noModel = (o: KubernetesObject) =>
  `${typeOf(o)}: no schema for this apiVersion/kind (known: ${Object.keys(MODULES).join(', ')})`;

const models = new Map<string, ModelClass>(
  await Promise.all(
    Object.entries(MODULES).map(async ([type, specifier]) => {
      const kind = type.split('/').at(-1)!;
      return [type, (await import(specifier))[kind] as ModelClass] as const;
    }),
  ),
);

/** What the JSON schema finds wrong with an object, each problem with its field path; [] when valid. */
export function schemaProblems(object: KubernetesObject): string[] {
  const Model = models.get(typeOf(object));
  if (!Model) return [noModel(object)];
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    const where = `${typeOf(object)} ${name(object)}`;
    return error.errors.map((e) => `${where}: ${e.instancePath || '/'} ${e.message ?? e.keyword}`);
  }
}

const parsed = new Map<string, ts.SourceFile | undefined>();

/**
 * What the models' TypeScript interfaces find wrong with objects (unknown fields above all): the objects
 * are type-checked as literals, where TypeScript rejects any property the interface does not declare.
 * TypeScript stops at the first problem of each object: fix it and the next one shows.
 */
export function typeProblems(objects: readonly KubernetesObject[]): string[] {
  const problems = objects.filter((o) => !MODULES[typeOf(o)]).map(noModel);
  const typed = objects.filter((o) => MODULES[typeOf(o)]);
  const fileName = fileURLToPath(new URL('./k8s-objects.virtual.ts', import.meta.url));
  const source = typed
    .map(
      (o, i) => `import type { I${o.kind} as T${i} } from '${MODULES[typeOf(o)]}';
export const o${i}: T${i} = ${JSON.stringify(o, null, 2)};\n`,
    )
    .join('');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists } = host;
  const virtual = ts.createSourceFile(fileName, source, ts.ScriptTarget.ES2022, true);
  host.getSourceFile = (file, ...rest) => {
    if (file === fileName) return virtual;
    // The libraries' declarations do not change between checks: parse each once.
    if (!parsed.has(file)) parsed.set(file, getSourceFile(file, ...rest));
    return parsed.get(file);
  };
  host.fileExists = (file) => file === fileName || fileExists(file);
  const program = ts.createProgram([fileName], options, host);
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ');
    if (diagnostic.file !== virtual || diagnostic.start === undefined) {
      problems.push(`type check: ${message}`);
      continue;
    }
    const [index, path] = fieldAt(virtual, diagnostic.start);
    const o = typed[index];
    problems.push(o ? `${typeOf(o)} ${name(o)}: ${path} ${message}` : `type check: ${message}`);
  }
  return problems;
}

/** The object (its index in the virtual file) and the field path (/spec/…) at a position. */
function fieldAt(file: ts.SourceFile, position: number): [number, string] {
  let node: ts.Node = file;
  for (let child: ts.Node | undefined = file; child; ) {
    node = child;
    child = node.getChildren(file).find((c) => c.getStart(file) <= position && position < c.getEnd());
  }
  const path: string[] = [];
  for (; node.parent; node = node.parent) {
    if (ts.isPropertyAssignment(node)) path.unshift(node.name.getText(file).replace(/^"|"$/g, ''));
    if (ts.isArrayLiteralExpression(node.parent))
      path.unshift(String(node.parent.elements.indexOf(node as ts.Expression)));
    if (ts.isVariableDeclaration(node))
      return [Number(node.name.getText(file).slice(1)), `/${path.join('/')}`];
  }
  return [-1, '/'];
}
