import Type from 'typebox';
import { EMAIL_MAX_LENGTH } from '../features/users/email.js';

/** Shapes several features return. Each feature keeps its own request schemas beside its routes. */
export const UserSchema = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    role: Type.Union([Type.Literal('admin'), Type.Literal('user')]),
    display_name: Type.Union([Type.String(), Type.Null()]),
    disabled: Type.Boolean(),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'User' },
);

export const PaginationQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  after: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
});

export const page = <T extends Type.TSchema>(item: T) =>
  Type.Object({
    data: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: 'pass as `after` for the next page',
    }),
  });

/** Builds a page from `limit + 1` fetched rows: the extra row only tells whether there is a next page. */
export function toPage<Row extends { id: string }, Out>(rows: Row[], limit: number, map: (row: Row) => Out) {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  return { data: kept.map(map), next_cursor: more ? kept.at(-1)!.id : null };
}

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** Checked by Ajv's `email` format; the CLI checks the same (features/users/email.ts). */
export const Email = Type.String({ format: 'email', maxLength: EMAIL_MAX_LENGTH });
export const Password = Type.String({ minLength: 1, maxLength: 1024 });
