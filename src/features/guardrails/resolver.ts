import { createHash } from 'node:crypto';
import type { Logger } from '../../core/logger.js';
import type { GatewayRequest } from '../../providers/router/types.js';
import { buildOne, DEFAULT_HOLDBACK_CHARS, type GuardrailSet } from './config.js';
import type { GuardrailConfig } from './schema.js';
import type { GuardrailStore, StoredGuardrail } from './store.js';

/**
 * Which guardrails apply to a request (issue 22: "attached to an assistant, an API key, a user's role, or
 * globally"). Layers, widest first: the preset, the routing file, then the stored global, role, key and
 * assistant guardrails. A layer's guardrail with a name already used replaces it in place; a disabled stored
 * guardrail removes the one of its name; a new name is appended. Sets are built once per combination of
 * role, key and assistant that has guardrails of its own, and dropped when the stored ones change.
 */
export class GuardrailResolution {
  #memo = new Map<string, GuardrailSet | undefined>();
  #fingerprints = new Map<string, string>();
  #index = new Map<string, StoredGuardrail[]>();

  constructor(
    private readonly options: {
      base: GuardrailConfig[];
      store?: GuardrailStore | undefined;
      holdbackChars?: number | undefined;
      logger?: Logger | undefined;
      env?: Record<string, string | undefined>;
    },
  ) {
    this.#reindex();
    options.store?.onReload(() => this.#reindex());
  }

  #reindex() {
    const index = new Map<string, StoredGuardrail[]>();
    for (const g of this.options.store?.all ?? []) {
      const key = `${g.scope}:${g.subjectId ?? ''}`;
      const list = index.get(key);
      if (list) list.push(g);
      else index.set(key, [g]);
    }
    this.#index = index;
    this.#memo = new Map();
    this.#fingerprints = new Map();
  }

  readonly resolve = (request: GatewayRequest): GuardrailSet | undefined => {
    const principal = request.caller?.principal;
    const role = principal?.role ? `role:${principal.role}` : '';
    const key = principal?.apiKeyId ? `key:${principal.apiKeyId}` : '';
    const assistant = request.context?.assistantId ? `assistant:${request.context.assistantId}` : '';
    const layers = [role, key, assistant].filter((k) => k && this.#index.has(k));
    const memoKey = layers.join('|');
    if (this.#memo.has(memoKey)) return this.#memo.get(memoKey);
    const set = this.#build(['global:', ...layers]);
    // Bounded: a memo per key or assistant with guardrails of its own, cleared on every change.
    if (this.#memo.size > 10_000) this.#memo.clear();
    this.#memo.set(memoKey, set);
    return set;
  };

  /**
   * A hash of the guardrails that apply to a caller (role, key, assistant), '' when none do: the response
   * cache mixes it into its keys, so an answer produced under other guardrails is never served (a guardrail
   * added, changed or switched off starts fresh entries for whom it applies). The same on every replica once
   * it has reloaded the stored guardrails.
   */
  fingerprint(subjects: {
    role?: string | undefined;
    keyId?: string | null | undefined;
    assistantId?: string | null | undefined;
  }): string {
    const layers = [
      subjects.role ? `role:${subjects.role}` : '',
      subjects.keyId ? `key:${subjects.keyId}` : '',
      subjects.assistantId ? `assistant:${subjects.assistantId}` : '',
    ].filter((k) => k && this.#index.has(k));
    const memoKey = layers.join('|');
    const known = this.#fingerprints.get(memoKey);
    if (known !== undefined) return known;
    const entries = this.#entries(['global:', ...layers]);
    const value = entries.length
      ? createHash('sha256')
          .update(JSON.stringify(entries.map((e) => e.config)))
          .digest('base64url')
          .slice(0, 22)
      : '';
    if (this.#fingerprints.size > 10_000) this.#fingerprints.clear();
    this.#fingerprints.set(memoKey, value);
    return value;
  }

  /** The effective list for a combination, in order (the admin API shows it). */
  effective(subjects: {
    role?: string | undefined;
    keyId?: string | undefined;
    assistantId?: string | undefined;
  }) {
    const layers = [
      subjects.role ? `role:${subjects.role}` : '',
      subjects.keyId ? `key:${subjects.keyId}` : '',
      subjects.assistantId ? `assistant:${subjects.assistantId}` : '',
    ].filter(Boolean);
    return this.#entries(['global:', ...layers]);
  }

  #entries(layers: string[]): { config: GuardrailConfig; from: string }[] {
    const list: { config: GuardrailConfig; from: string }[] = this.options.base.map((config) => ({
      config,
      from: 'config',
    }));
    for (const layer of layers)
      for (const stored of this.#index.get(layer) ?? []) {
        const at = list.findIndex((e) => e.config.name === stored.config.name);
        if (!stored.enabled) {
          if (at >= 0) list.splice(at, 1);
          continue;
        }
        const entry = { config: stored.config, from: stored.id };
        if (at >= 0) list[at] = entry;
        else list.push(entry);
      }
    return list;
  }

  #build(layers: string[]): GuardrailSet | undefined {
    const entries = this.#entries(layers);
    if (!entries.length) return undefined;
    const set: GuardrailSet = {
      input: [],
      parallel: [],
      output: [],
      structured: [],
      reminders: [],
      holdbackChars: this.options.holdbackChars ?? DEFAULT_HOLDBACK_CHARS,
    };
    for (const { config, from } of entries) {
      const built = buildOne(config, `guardrail ${config.name} (${from})`, this.options.env ?? process.env);
      if ('problems' in built) {
        // Checked when written; a replica without the webhook's secret in its environment lands here.
        this.options.logger?.error({ problems: built.problems }, 'a stored guardrail cannot be used here');
        continue;
      }
      const g = built.guardrail;
      if (g.kind === 'json_schema') set.structured.push(g);
      else if (g.kind === 'reminder') set.reminders.push(g);
      else set[g.stage].push(g);
    }
    return set;
  }
}
