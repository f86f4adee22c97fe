import os from 'node:os';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { bearerSecurity } from '../../plugins/auth.js';
import { HEALTH_WINDOW_MS } from '../../providers/router/deployment-health.js';
import type { ChatGateway } from '../../providers/router/types.js';

const Millis = Type.Union([Type.Number(), Type.Null()]);

const DeploymentHealthSchema = Type.Object({
  id: Type.String({ description: '`provider/upstream-model`' }),
  provider: Type.String(),
  model: Type.String({ description: 'the upstream model name' }),
  priority: Type.Integer({ description: 'lower is tried first' }),
  weight: Type.Number(),
  state: Type.Union([Type.Literal('closed'), Type.Literal('half-open'), Type.Literal('open')], {
    description: 'the circuit breaker: open skips the deployment until its cooldown has passed',
  }),
  attempts: Type.Integer({ description: 'upstream attempts in the window' }),
  failures: Type.Integer({
    description: 'attempts that failed for a reason that counts against the breaker',
  }),
  error_ratio: Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()]),
  p50_latency_ms: Millis,
  p95_latency_ms: Millis,
  p50_ttft_ms: Type.Union([Type.Number(), Type.Null()], { description: 'time to first token (streams)' }),
  p95_ttft_ms: Millis,
});

const ProvidersResponse = Type.Object({
  replica: Type.String({ description: 'the process that answered: figures are per replica' }),
  window_seconds: Type.Integer({ description: 'error ratio and latency cover this many recent seconds' }),
  generated_at: Type.String(),
  routes: Type.Array(
    Type.Object({
      name: Type.String({ description: 'the model name clients send' }),
      kind: Type.Union([Type.Literal('alias'), Type.Literal('direct')], {
        description:
          'alias: configured in the routing file; direct: a model name sent straight to a provider',
      }),
      deployments: Type.Array(DeploymentHealthSchema),
    }),
  ),
});

/** Routes, deployments and their live health as this replica sees them (admin). */
export async function providerRoutes(fastify: FastifyInstance, deps: { gateway: ChatGateway }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const replica = `${os.hostname()}:${process.pid}`;
  app.get(
    '/api/admin/providers',
    {
      preHandler: app.requireAdmin,
      schema: {
        tags: ['admin'],
        security: bearerSecurity,
        summary:
          'Routes and deployments with circuit state, recent error ratio and latency, as this replica sees them (admin)',
        response: { 200: ProvidersResponse, 401: Type.Ref('Error'), 403: Type.Ref('Error') },
      },
    },
    async () => ({
      replica,
      window_seconds: HEALTH_WINDOW_MS / 1000,
      generated_at: new Date().toISOString(),
      routes: deps.gateway.providerHealth?.() ?? [],
    }),
  );
}
