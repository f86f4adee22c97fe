import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { AssistantsTable } from '../../db/schema.js';
import type { AssistantParams } from './schemas.js';

export type AssistantRow = AssistantsTable;

export interface AssistantInput {
  ownerId: string | null;
  name: string;
  description: string | null;
  systemPrompt: string;
  model: string;
  params: AssistantParams;
}

export function parseParams(row: Pick<AssistantRow, 'params'>): AssistantParams {
  try {
    const parsed = JSON.parse(row.params) as unknown;
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as AssistantParams) : {};
  } catch {
    return {};
  }
}

export function toPublicAssistant(row: AssistantRow) {
  return {
    id: row.id,
    owner_id: row.owner_id,
    shared: row.owner_id === null,
    name: row.name,
    description: row.description,
    system_prompt: row.system_prompt,
    model: row.model,
    params: parseParams(row),
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Assistants (personas): shared ones have no owner; private ones belong to one user. */
export class AssistantStore {
  constructor(private readonly db: Db) {}

  async create(input: AssistantInput): Promise<AssistantRow> {
    const now = nowIso();
    const row: AssistantRow = {
      id: newId('ast'),
      owner_id: input.ownerId,
      name: input.name,
      description: input.description,
      system_prompt: input.systemPrompt,
      model: input.model,
      params: JSON.stringify(input.params),
      created_at: now,
      updated_at: now,
    };
    await this.db.insertInto('assistants').values(row).execute();
    return row;
  }

  findById(id: string): Promise<AssistantRow | undefined> {
    return this.db.selectFrom('assistants').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Newest first. `viewerId` limits the list to shared assistants plus the viewer's own; undefined lists all. */
  list(options: { viewerId: string | null | undefined; limit: number; after?: string | undefined }) {
    let query = this.db.selectFrom('assistants').selectAll().orderBy('id', 'desc').limit(options.limit);
    const viewer = options.viewerId;
    if (viewer !== undefined) {
      query = query.where((eb) =>
        viewer === null
          ? eb('owner_id', 'is', null)
          : eb.or([eb('owner_id', 'is', null), eb('owner_id', '=', viewer)]),
      );
    }
    if (options.after) query = query.where('id', '<', options.after);
    return query.execute();
  }

  async update(
    id: string,
    changes: Partial<Pick<AssistantRow, 'name' | 'description' | 'system_prompt' | 'model' | 'params'>>,
  ): Promise<AssistantRow | undefined> {
    await this.db
      .updateTable('assistants')
      .set({ ...changes, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
    return this.findById(id);
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('assistants').where('id', '=', id).execute();
  }
}
