import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { AppError } from '../../core/errors.js';
import { addDays, dayStartIso, localDay } from '../../core/timezone.js';
import { type Db, isWriteRace } from '../../db/database.js';
import { bearerSecurity } from '../../plugins/auth.js';
import { isDay } from '../limits/rollups.js';
import { buildOne } from './config.js';
import { withGuardrailEvents } from './events.js';
import { PRESET_NAMES, PRESETS } from './presets.js';
import type { GuardrailResolution } from './resolver.js';
import { type GuardrailConfig, GuardrailName, GuardrailRuleProperties } from './schema.js';
import { type GuardrailScope, type GuardrailStore, MAX_GUARDRAILS, type StoredGuardrail } from './store.js';

const Scope = Type.Union(
  [Type.Literal('global'), Type.Literal('role'), Type.Literal('key'), Type.Literal('assistant')],
  {
    description: 'global, or attached to a role (admin, user), an API key or an assistant',
  },
);
const SubjectId = Type.String({
  minLength: 1,
  maxLength: 255,
  description: 'the role, key id or assistant id',
});
const Attachment = {
  scope: Scope,
  subject_id: Type.Optional(Type.Union([SubjectId, Type.Null()])),
  position: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'order within its scope' }),
  ),
  enabled: Type.Optional(
    Type.Boolean({ description: 'false switches off the guardrail of this name from a wider scope' }),
  ),
};
const GuardrailBody = Type.Object(
  { name: GuardrailName, ...GuardrailRuleProperties, ...Attachment },
  { additionalProperties: false },
);
const StoredSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  ...GuardrailRuleProperties,
  scope: Scope,
  subject_id: Type.Union([Type.String(), Type.Null()]),
  position: Type.Integer(),
  enabled: Type.Boolean(),
  created_at: Type.String(),
  updated_at: Type.String(),
});
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
  409: Type.Ref('Error'),
};

function toJson(g: StoredGuardrail): Static<typeof StoredSchema> {
  return {
    ...g.config,
    id: g.id,
    scope: g.scope,
    subject_id: g.subjectId,
    position: g.position,
    enabled: g.enabled,
    created_at: g.createdAt,
    updated_at: g.updatedAt,
  } as Static<typeof StoredSchema>;
}

/**
 * The guardrails' admin API (issue 22): stored guardrails attached globally, per role, per API key or per
 * assistant, on top of the routing file's and the preset's. Admin only; every write is in the audit trail
 * (the audit plugin records admin writes) and binds every replica at once (store.ts, changes.ts).
 */
export async function guardrailRoutes(
  fastify: FastifyInstance,
  deps: {
    db: Db;
    store: GuardrailStore;
    resolution: GuardrailResolution;
    env?: Record<string, string | undefined>;
    /** TIMEZONE: the referral report's days are its calendar days, like budgets and usage. */
    timeZone?: string;
    /** The clock "today" is read from (tests inject one). */
    now?: () => number;
  },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['guardrails'], security: bearerSecurity };

  /** Checks the body as a guardrail and its attachment; answers every problem in one 400. */
  async function inputOf(body: Static<typeof GuardrailBody>) {
    const { scope, subject_id, position, enabled, ...config } = body;
    const subjectId = subject_id ?? null;
    if (scope === 'global' && subjectId !== null)
      throw new AppError('invalid_request', 'a global guardrail has no subject_id', { param: 'subject_id' });
    if (scope !== 'global' && subjectId === null)
      throw new AppError('invalid_request', `a ${scope} guardrail needs a subject_id`, {
        param: 'subject_id',
      });
    if (scope === 'role' && subjectId !== 'admin' && subjectId !== 'user')
      throw new AppError('invalid_request', 'the role is admin or user', { param: 'subject_id' });
    if (scope === 'key' || scope === 'assistant') {
      const table = scope === 'key' ? 'api_keys' : 'assistants';
      const row = await deps.db
        .selectFrom(table)
        .select('id')
        .where('id', '=', subjectId!)
        .executeTakeFirst();
      if (!row)
        throw new AppError('not_found', scope === 'key' ? 'API key not found' : 'assistant not found', {
          param: 'subject_id',
        });
    }
    const built = buildOne(config as GuardrailConfig, 'guardrail', deps.env ?? {});
    if ('problems' in built) throw new AppError('invalid_request', built.problems.join('; '));
    return {
      scope,
      subjectId,
      position: position ?? 0,
      enabled: enabled ?? true,
      config: config as GuardrailConfig,
    };
  }

  const conflict = (err: unknown): never => {
    if (isWriteRace(err))
      throw new AppError('conflict', 'a guardrail of that name is already attached there', { param: 'name' });
    throw err;
  };

  app.get(
    '/api/guardrails',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Stored guardrails (admin), optionally of one scope and subject',
        querystring: Type.Object({ scope: Type.Optional(Scope), subject_id: Type.Optional(SubjectId) }),
        response: { 200: Type.Object({ data: Type.Array(StoredSchema) }), ...errors },
      },
    },
    async (request) => {
      const { scope, subject_id } = request.query;
      const list = await deps.store.list({
        scope,
        subjectId: subject_id ?? (scope === 'global' ? '' : undefined),
      });
      return { data: list.map(toJson) };
    },
  );

  app.post(
    '/api/guardrails',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Attach a guardrail globally, to a role, an API key or an assistant (admin)',
        description:
          'The same fields as a guardrail of the routing file, plus where it applies. Binds every replica ' +
          'within a second. A name already in effect from a wider scope is replaced there by this one.',
        body: GuardrailBody,
        response: { 201: StoredSchema, ...errors },
      },
    },
    async (request, reply) => {
      const input = await inputOf(request.body);
      if ((await deps.store.count()) >= MAX_GUARDRAILS)
        throw new AppError('invalid_request', `at most ${MAX_GUARDRAILS} stored guardrails`);
      const created = await deps.store.create(input).catch(conflict);
      reply.code(201);
      return toJson(created);
    },
  );

  app.get(
    '/api/guardrails/effective',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'The guardrails a request would get, in order, for a role, key and assistant (admin)',
        querystring: Type.Object({
          role: Type.Optional(Type.Union([Type.Literal('admin'), Type.Literal('user')])),
          key_id: Type.Optional(SubjectId),
          assistant_id: Type.Optional(SubjectId),
        }),
        response: {
          200: Type.Object({
            data: Type.Array(
              Type.Object({
                name: Type.String(),
                ...GuardrailRuleProperties,
                from: Type.String({
                  description: "'config' (routing file or preset) or the stored guardrail's id",
                }),
              }),
            ),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { role, key_id, assistant_id } = request.query;
      const list = deps.resolution.effective({ role, keyId: key_id, assistantId: assistant_id });
      return { data: list.map(({ config, from }) => ({ ...config, from })) };
    },
  );

  app.get(
    '/api/guardrails/presets',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'The safety presets and their rules (admin)',
        response: {
          200: Type.Object({
            data: Type.Array(
              Type.Object({
                name: Type.String(),
                description: Type.String(),
                guardrails: Type.Array(Type.Object({ name: Type.String(), ...GuardrailRuleProperties })),
              }),
            ),
          }),
          ...errors,
        },
      },
    },
    async () => ({ data: PRESET_NAMES.map((name) => ({ name, ...PRESETS[name]! })) }),
  );

  app.post(
    '/api/guardrails/presets/:preset/apply',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: "Attach a preset's guardrails to a scope in one call (admin), e.g. minor mode for a key",
        description: 'Guardrails of the same name already attached there are replaced.',
        params: Type.Object({ preset: Type.Union([Type.Literal('child-safe'), Type.Literal('wellbeing')]) }),
        body: Type.Object(
          { scope: Scope, subject_id: Type.Optional(Type.Union([SubjectId, Type.Null()])) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ data: Type.Array(StoredSchema) }), ...errors },
      },
    },
    async (request) => {
      const preset = PRESETS[request.params.preset]!;
      const { scope, subject_id } = request.body;
      const existing = await deps.store.list({ scope, subjectId: subject_id ?? '' });
      const out: StoredGuardrail[] = [];
      for (const [position, config] of preset.guardrails.entries()) {
        const input = await inputOf({ ...config, scope, subject_id, position } as Static<
          typeof GuardrailBody
        >);
        const same = existing.find((g) => g.config.name === config.name);
        const saved = same
          ? await deps.store.update(same.id, input)
          : await deps.store.create(input).catch(conflict);
        if (saved) out.push(saved);
      }
      return { data: out.map(toJson) };
    },
  );

  const timeZone = deps.timeZone ?? 'UTC';
  const now = deps.now ?? Date.now;
  app.get(
    '/api/guardrails/referrals',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary:
          'Crisis referrals per day (TIMEZONE) and category (admin): the figure SB 243 asks operators to report',
        querystring: Type.Object({
          from: Type.Optional(
            Type.String({ format: 'date', description: 'first day, inclusive (in `time_zone`)' }),
          ),
          to: Type.Optional(
            Type.String({ format: 'date', description: 'last day, inclusive (in `time_zone`)' }),
          ),
          days: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 366,
              description: 'instead of `from`: the last n days up to `to` (default today in `time_zone`)',
            }),
          ),
        }),
        response: {
          200: Type.Object({
            total: Type.Integer(),
            time_zone: Type.String({
              description: 'TIMEZONE: whose calendar days `day`, `from` and `to` are',
            }),
            data: Type.Array(
              Type.Object({ day: Type.String(), category: Type.String(), referrals: Type.Integer() }),
            ),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { days } = request.query;
      for (const param of ['from', 'to'] as const) {
        const day = request.query[param];
        if (day !== undefined && !isDay(day))
          throw new AppError('validation_error', `\`${param}\` is not a calendar day: ${day}`, { param });
      }
      if (days !== undefined && request.query.from !== undefined)
        throw new AppError('validation_error', 'give `from` or `days`, not both', { param: 'days' });
      // The days are the operator's (TIMEZONE), as for budgets and usage: a day starts at its local midnight.
      const to = request.query.to ?? (days !== undefined ? localDay(now(), timeZone) : undefined);
      const from = days !== undefined ? addDays(to!, 1 - days) : request.query.from;
      if (from && to && from > to)
        throw new AppError('validation_error', '`from` must not be after `to`', { param: 'from' });
      let query = withGuardrailEvents(deps.db)
        .selectFrom('guardrail_events')
        .select(['created_at', 'category'])
        .where('action', '=', 'refer');
      if (from) query = query.where('created_at', '>=', dayStartIso(from, timeZone));
      if (to) query = query.where('created_at', '<', dayStartIso(addDays(to, 1), timeZone));
      const counts = new Map<string, number>();
      // Referrals are rare events (a handful a day): counted here rather than with dialect-specific date SQL.
      for (const row of await query.limit(1_000_000).execute()) {
        const key = `${localDay(Date.parse(row.created_at), timeZone)} ${row.category}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      const data = [...counts.entries()]
        .map(([key, referrals]) => {
          const [day, category] = key.split(' ') as [string, string];
          return { day, category, referrals };
        })
        .sort((a, b) => a.day.localeCompare(b.day) || a.category.localeCompare(b.category));
      return { total: data.reduce((n, d) => n + d.referrals, 0), time_zone: timeZone, data };
    },
  );

  app.get(
    '/api/guardrails/:id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'One stored guardrail (admin)',
        params: IdParams,
        response: { 200: StoredSchema, ...errors },
      },
    },
    async (request) => {
      const found = await deps.store.get(request.params.id);
      if (!found) throw new AppError('not_found', 'guardrail not found');
      return toJson(found);
    },
  );

  app.put(
    '/api/guardrails/:id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Replace a stored guardrail (admin); binds every replica within a second',
        params: IdParams,
        body: GuardrailBody,
        response: { 200: StoredSchema, ...errors },
      },
    },
    async (request) => {
      if (!(await deps.store.get(request.params.id))) throw new AppError('not_found', 'guardrail not found');
      const updated = await deps.store.update(request.params.id, await inputOf(request.body)).catch(conflict);
      if (!updated) throw new AppError('not_found', 'guardrail not found');
      return toJson(updated);
    },
  );

  app.delete(
    '/api/guardrails/:id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Remove a stored guardrail (admin)',
        params: IdParams,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      if (!(await deps.store.remove(request.params.id)))
        throw new AppError('not_found', 'guardrail not found');
      reply.code(204);
      return null;
    },
  );
}

export type { GuardrailScope };
