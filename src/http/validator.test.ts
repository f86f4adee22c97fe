import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import Type from 'typebox';
import { startTestApp } from '../../test/helpers/app.js';
import { buildSerializer } from './serializer.js';
import { buildValidator, compiledWhenRegistered, compileEveryRouteAtRegistration } from './validator.js';

const Body = Type.Object(
  { limit: Type.Union([Type.Number(), Type.Null()]) },
  { additionalProperties: false },
);
const Query = Type.Object({ page: Type.Optional(Type.Integer({ minimum: 1 })) });
const Reply = Type.Object({ limit: Type.Union([Type.Number(), Type.Null()]), page: Type.Integer() });

async function appWith(url: string) {
  // As app.ts configures Fastify: unknown fields refused, not dropped.
  const app = Fastify({
    ajv: { customOptions: { allErrors: false, removeAdditional: false } },
    schemaController: { compilersFactory: { buildValidator, buildSerializer } },
  });
  app.post(
    url,
    { schema: { body: Body, querystring: Query, response: { 200: Reply } } },
    async (request) => ({
      ...(request.body as object),
      page: (request.query as { page?: number }).page ?? 1,
      dropped: 'not in the schema',
    }),
  );
  await app.ready();
  return app;
}

describe('route schemas compiled on first use', () => {
  it('compiles the hot paths when registered, every other route on its first request', () => {
    for (const url of ['/v1/chat/completions', '/v1/messages', '/health/ready', '/health'])
      assert.equal(compiledWhenRegistered(url), true, url);
    for (const url of ['/api/conversations', '/api/keys/:id', '/v1beta/x', '/console/*'])
      assert.equal(compiledWhenRegistered(url), false, url);
  });

  it('validates, coerces and serializes alike either way, failures included', async () => {
    const answers = [];
    for (const url of ['/v1/limits', '/api/limits']) {
      const app = await appWith(url);
      const call = (query: string, body: unknown) =>
        app.inject({ method: 'POST', url: `${url}${query}`, payload: body as object });
      const results = [];
      for (const [query, body] of [
        ['?page=2', { limit: null }],
        ['', { limit: 5 }],
        ['?page=0', { limit: 5 }],
        ['', { limit: 'five' }],
        ['', { limit: 5, extra: true }],
        ['?page=2', { limit: null }],
      ] as const) {
        const res = await call(query, body);
        results.push([res.statusCode, res.json()]);
      }
      await app.close();
      answers.push(results);
    }
    assert.deepEqual(answers[1], answers[0]);
    assert.deepEqual(answers[0]?.[0], [200, { limit: null, page: 2 }]);
    assert.equal(answers[0]?.[2]?.[0], 400);
    assert.equal(answers[0]?.[3]?.[0], 400);
    assert.equal(answers[0]?.[4]?.[0], 400);
  });

  it('every route of the whole app has schemas that compile (compiled at registration here)', async () => {
    // A schema Ajv cannot compile would otherwise fail only its route's first request: a broken one fails this.
    compileEveryRouteAtRegistration(true);
    try {
      const broken = Fastify({ schemaController: { compilersFactory: { buildValidator, buildSerializer } } });
      broken.get(
        '/api/broken',
        { schema: { querystring: Type.Object({ q: Type.String({ pattern: '(' }) }) } },
        () => ({}),
      );
      await assert.rejects(async () => broken.ready(), 'a schema that cannot compile fails the start');
      const t = await startTestApp();
      await t.close();
    } finally {
      compileEveryRouteAtRegistration(false);
    }
  });
});
