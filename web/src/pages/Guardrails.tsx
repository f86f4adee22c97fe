import { type FormEvent, useCallback, useEffect, useState } from 'react';
import {
  type ApiKey,
  type Assistant,
  api,
  type EffectiveGuardrail,
  type Guardrail,
  type GuardrailBody,
  type GuardrailPreset,
  type Res,
} from '../api/client';
import { AdminTable, OutcomeMessage, ROLES, Select, submitted, useOutcome } from './admin-form';

type Attach = 'global' | 'role' | 'key' | 'assistant';
type Referrals = Res<'/api/guardrails/referrals', 'get'>;

const CHECKS = ['regex', 'pii', 'injection', 'moderation', 'webhook', 'json_schema', 'crisis', 'reminder'];
const STAGES = ['input', 'parallel', 'output'];
const ACTIONS = ['block', 'redact', 'mutate', 'mask', 'refer', 'flag', 'log'];
/** The fields the form has inputs for; every other field of a guardrail goes through "More settings". */
const FORM_FIELDS = [
  'name',
  'check',
  'stage',
  'action',
  'on_error',
  'deny',
  'allow',
  'keywords',
  'categories',
];
const STORED_FIELDS = ['id', 'scope', 'subject_id', 'position', 'enabled', 'created_at', 'updated_at'];

interface Draft {
  id?: string;
  name: string;
  check: string;
  stage: string;
  action: string;
  on_error: string;
  deny: string;
  allow: string;
  keywords: string;
  categories: string;
  more: string;
  scope: Attach;
  subject_id: string;
  position: string;
  enabled: boolean;
}
const EMPTY: Draft = {
  name: '',
  check: 'regex',
  stage: '',
  action: '',
  on_error: '',
  deny: '',
  allow: '',
  keywords: '',
  categories: '',
  more: '',
  scope: 'global',
  subject_id: '',
  position: '0',
  enabled: true,
};

/** Categories: one per line or separated by commas. */
const lines = (text: string) =>
  text
    .split(/[\n,]/)
    .map((l) => l.trim())
    .filter(Boolean);
const listOf = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/** The draft as the API's body; a client-side problem (bad JSON) as a sentence instead. */
function bodyOf(d: Draft): GuardrailBody | string {
  let more: Record<string, unknown> = {};
  if (d.more.trim()) {
    try {
      const parsed = JSON.parse(d.more) as unknown;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
        return 'More settings must be a JSON object, like {"threshold": 2}.';
      more = parsed as Record<string, unknown>;
    } catch (err) {
      return `More settings is not valid JSON: ${(err as Error).message}.`;
    }
  }
  const body: Record<string, unknown> = {
    ...more,
    name: d.name.trim(),
    check: d.check,
    scope: d.scope,
    subject_id: d.scope === 'global' ? null : d.subject_id || null,
    position: Number(d.position) || 0,
    enabled: d.enabled,
  };
  if (d.stage) body.stage = d.stage;
  if (d.action) body.action = d.action;
  if (d.on_error) body.on_error = d.on_error;
  if (listOf(d.deny).length) body.deny = listOf(d.deny);
  if (listOf(d.allow).length) body.allow = listOf(d.allow);
  if (listOf(d.keywords).length) body.keywords = listOf(d.keywords);
  if (lines(d.categories).length) body.categories = lines(d.categories);
  return body as GuardrailBody;
}

function draftOf(g: Guardrail): Draft {
  const rest = Object.fromEntries(
    Object.entries(g).filter(([k]) => !FORM_FIELDS.includes(k) && !STORED_FIELDS.includes(k)),
  );
  return {
    id: g.id,
    name: g.name,
    check: g.check,
    stage: g.stage ?? '',
    action: g.action ?? '',
    on_error: g.on_error ?? '',
    deny: (g.deny ?? []).join('\n'),
    allow: (g.allow ?? []).join('\n'),
    keywords: (g.keywords ?? []).join('\n'),
    categories: (g.categories ?? []).join('\n'),
    more: Object.keys(rest).length ? JSON.stringify(rest, null, 2) : '',
    scope: g.scope,
    subject_id: g.subject_id ?? '',
    position: String(g.position),
    enabled: g.enabled,
  };
}

/** Guardrails (issue 22): the stored ones by scope, presets, what a request would get, crisis referrals. */
export function GuardrailsPage() {
  const [list, setList] = useState<Guardrail[] | null>(null);
  const [presets, setPresets] = useState<GuardrailPreset[]>([]);
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [assistants, setAssistants] = useState<Assistant[]>([]);
  const [referrals, setReferrals] = useState<Referrals | null>(null);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const { outcome, fail, run } = useOutcome();

  const load = useCallback(() => api.guardrails().then((g) => setList(g.data), fail), [fail]);
  useEffect(() => {
    void load();
    const ignore = () => {};
    api.guardrailPresets().then((p) => setPresets(p.data), ignore);
    api.keys(true).then((k) => setKeys(k.data.filter((x) => !x.revoked_at)), ignore);
    api.assistants().then((a) => setAssistants(a.data), ignore);
    // The server's days (TIMEZONE), not the browser's: it counts back from its own today.
    api.referrals({ days: 30 }).then(setReferrals, ignore);
  }, [load]);

  const subjectName = (scope: Attach, id: string | null) => {
    if (scope === 'global' || !id) return 'every request';
    if (scope === 'role') return `role ${id}`;
    if (scope === 'key') {
      const k = keys.find((x) => x.id === id);
      return `key ${k ? `${k.name} (${k.prefix}…)` : id}`;
    }
    return `assistant ${assistants.find((a) => a.id === id)?.name ?? id}`;
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    const body = bodyOf(draft);
    if (typeof body === 'string') {
      fail(body);
      return;
    }
    const saved = await run(
      () => (draft.id ? api.updateGuardrail(draft.id, body) : api.createGuardrail(body)),
      (g) => `Saved ${g.name} for ${subjectName(g.scope, g.subject_id)}.`,
    );
    if (!saved) return;
    setDraft(EMPTY);
    await load();
  };

  const remove = async (g: Guardrail) => {
    if (!confirm(`Delete the guardrail “${g.name}” (${subjectName(g.scope, g.subject_id)})?`)) return;
    await run(() => api.deleteGuardrail(g.id), `Deleted ${g.name}.`);
    await load();
  };

  const pick = (k: keyof Draft) => (value: string) => setDraft({ ...draft, [k]: value });
  const set = (k: keyof Draft) => (e: { target: { value: string } }) => pick(k)(e.target.value);
  const subjects = { keys, assistants };

  return (
    <section className="page">
      <h1>Guardrails</h1>
      <p className="muted">
        Stored guardrails add to the routing file’s: global, per role, per API key or per assistant. A name
        already in effect from a wider scope is replaced by the narrower one.
      </p>
      <OutcomeMessage outcome={outcome} />
      <AdminTable
        columns={['Name', 'Check', 'Stage', 'Action', 'Applies to', 'Status']}
        actions
        testId="guardrails"
        rows={list}
        loading="Loading guardrails…"
        empty="No stored guardrails: only the routing file’s apply."
      >
        {list?.map((g) => (
          <tr key={g.id} data-testid="guardrail-row">
            <th scope="row">{g.name}</th>
            <td data-label="Check">{g.check}</td>
            <td data-label="Stage">{g.stage ?? 'default'}</td>
            <td data-label="Action">{g.action ?? 'default'}</td>
            <td data-label="Applies to">{subjectName(g.scope, g.subject_id)}</td>
            <td data-label="Status">
              <span className="badge">{g.enabled ? 'on' : 'switched off'}</span>
            </td>
            <td className="actions">
              <button type="button" onClick={() => setDraft(draftOf(g))} aria-label={`Edit ${g.name}`}>
                Edit
              </button>
              <button type="button" onClick={() => remove(g)} aria-label={`Delete ${g.name}`}>
                Delete
              </button>
            </td>
          </tr>
        ))}
      </AdminTable>

      <form className="stack" onSubmit={save} aria-label={draft.id ? 'Edit guardrail' : 'Add guardrail'}>
        <h2>{draft.id ? `Edit ${draft.name}` : 'Add a guardrail'}</h2>
        <div className="row">
          <label>
            Name
            <input value={draft.name} onChange={set('name')} required maxLength={128} />
          </label>
          <Choice label="Check" value={draft.check} onChange={pick('check')} options={CHECKS} />
          <Choice
            label="Stage"
            value={draft.stage}
            onChange={pick('stage')}
            options={STAGES}
            blank="default"
          />
          <Choice
            label="Action"
            value={draft.action}
            onChange={pick('action')}
            options={ACTIONS}
            blank="default"
          />
          <Choice
            label="On error"
            value={draft.on_error}
            onChange={pick('on_error')}
            options={['closed', 'open']}
            blank="default"
          />
        </div>
        <div className="row">
          <Attachment
            scope={draft.scope}
            subject={draft.subject_id}
            onChange={(scope, subject_id) => setDraft({ ...draft, scope, subject_id })}
            {...subjects}
          />
          <label>
            Position
            <input type="number" min={0} value={draft.position} onChange={set('position')} />
          </label>
          <label className="inline">
            <input
              type="checkbox"
              checked={draft.enabled}
              onChange={(e) => setDraft({ ...draft, enabled: e.target.checked })}
            />
            Enabled
          </label>
        </div>
        <div className="row">
          <label>
            Deny patterns (one per line)
            <textarea rows={3} value={draft.deny} onChange={set('deny')} />
          </label>
          <label>
            Allow patterns (one per line)
            <textarea rows={3} value={draft.allow} onChange={set('allow')} />
          </label>
          <label>
            Keywords (one per line)
            <textarea rows={3} value={draft.keywords} onChange={set('keywords')} />
          </label>
          <label>
            PII categories (one per line or comma-separated)
            <textarea rows={3} value={draft.categories} onChange={set('categories')} />
          </label>
        </div>
        <label>
          More settings (JSON: threshold, url, model, messages, schema…)
          <textarea rows={3} value={draft.more} onChange={set('more')} spellCheck={false} />
        </label>
        <div className="row">
          <button type="submit">{draft.id ? 'Save guardrail' : 'Add guardrail'}</button>
          {draft.id && (
            <button type="button" onClick={() => setDraft(EMPTY)}>
              Cancel
            </button>
          )}
        </div>
      </form>

      <Presets presets={presets} {...subjects} onApplied={load} run={run} />
      <Effective {...subjects} />

      <section aria-labelledby="referrals-title">
        <h2 id="referrals-title">Crisis referrals</h2>
        {referrals === null ? (
          <p>Loading referrals…</p>
        ) : (
          <>
            <p data-testid="referrals-total">
              {referrals.total} referral{referrals.total === 1 ? '' : 's'} in the last 30 days (
              {referrals.time_zone}).
            </p>
            {referrals.data.length > 0 && (
              <ul>
                {referrals.data.map((r) => (
                  <li key={`${r.day} ${r.category}`}>
                    {r.day}: {r.referrals} × {r.category}
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
      </section>
    </section>
  );
}

/** A select named by its label (the tests and screen readers find it by that name). */
const Choice = (props: Parameters<typeof Select>[0] & { label: string }) => (
  <Select {...props} ariaLabel={props.label} />
);

/** Where a guardrail applies: the scope, then the role, key or assistant of that scope. */
function Attachment(props: {
  scope: Attach;
  subject: string;
  keys: ApiKey[];
  assistants: Assistant[];
  onChange: (scope: Attach, subject: string) => void;
}) {
  const { scope, subject, keys, assistants, onChange } = props;
  const options =
    scope === 'role'
      ? ROLES
      : scope === 'key'
        ? keys.map((k) => ({ value: k.id, label: `${k.name} (${k.prefix}…)` }))
        : assistants.map((a) => ({ value: a.id, label: a.name }));
  const subjectLabel = scope === 'role' ? 'Role' : scope === 'key' ? 'API key' : 'Assistant';
  return (
    <>
      <Choice
        label="Applies to"
        value={scope}
        onChange={(v) => onChange(v as Attach, '')}
        options={[
          { value: 'global', label: 'every request' },
          { value: 'role', label: 'a role' },
          { value: 'key', label: 'an API key' },
          { value: 'assistant', label: 'an assistant' },
        ]}
      />
      {scope !== 'global' && (
        <Choice
          label={subjectLabel}
          value={subject}
          onChange={(v) => onChange(scope, v)}
          blank="Choose…"
          options={options}
        />
      )}
    </>
  );
}

function Presets(props: {
  presets: GuardrailPreset[];
  keys: ApiKey[];
  assistants: Assistant[];
  onApplied: () => Promise<unknown>;
  run: ReturnType<typeof useOutcome>['run'];
}) {
  const [scope, setScope] = useState<Attach>('global');
  const [subject, setSubject] = useState('');
  const apply = async (name: string) => {
    const applied = await props.run(
      () =>
        api.applyPreset(name as 'child-safe' | 'wellbeing', {
          scope,
          subject_id: scope === 'global' ? null : subject || null,
        }),
      (out) => `Applied ${name}: ${out.data.map((g) => g.name).join(', ')}.`,
    );
    if (applied) await props.onApplied();
  };
  return (
    <section aria-labelledby="presets-title">
      <h2 id="presets-title">Presets</h2>
      <form className="row" aria-label="Where presets apply" onSubmit={(e) => e.preventDefault()}>
        <Attachment
          scope={scope}
          subject={subject}
          keys={props.keys}
          assistants={props.assistants}
          onChange={(s, id) => {
            setScope(s);
            setSubject(id);
          }}
        />
      </form>
      <ul className="stack">
        {props.presets.map((p) => (
          <li key={p.name}>
            <strong>{p.name}</strong> — {p.description}{' '}
            <span className="muted">({p.guardrails.map((g) => g.name).join(', ')})</span>{' '}
            <button type="button" onClick={() => apply(p.name)}>
              Apply {p.name}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** What a request of a role, key and assistant would get, in order, and where each guardrail comes from. */
function Effective(props: { keys: ApiKey[]; assistants: Assistant[] }) {
  const [rows, setRows] = useState<EffectiveGuardrail[] | null>(null);
  const { outcome, run } = useOutcome();
  const show = async (e: FormEvent<HTMLFormElement>) => {
    const { text } = submitted(e);
    const q = (k: string) => text(k) || undefined;
    await run(async () => {
      const effective = await api.effectiveGuardrails({
        role: q('role'),
        key_id: q('key_id'),
        assistant_id: q('assistant_id'),
      });
      setRows(effective.data);
    }, null);
  };
  return (
    <section aria-labelledby="effective-title">
      <h2 id="effective-title">In effect</h2>
      <form className="row" onSubmit={show} aria-label="Guardrails in effect">
        <Choice label="Role" name="role" defaultValue="user" options={ROLES} />
        <Choice
          label="API key"
          name="key_id"
          defaultValue=""
          blank="none"
          options={props.keys.map((k) => ({ value: k.id, label: `${k.name} (${k.prefix}…)` }))}
        />
        <Choice
          label="Assistant"
          name="assistant_id"
          defaultValue=""
          blank="none"
          options={props.assistants.map((a) => ({ value: a.id, label: a.name }))}
        />
        <button type="submit">Show</button>
      </form>
      <OutcomeMessage outcome={outcome} />
      {rows && (
        <ol data-testid="effective">
          {rows.map((g) => (
            <li key={g.name}>
              <strong>{g.name}</strong> {g.check}, {g.stage ?? 'default stage'},{' '}
              {g.action ?? 'default action'}{' '}
              <span className="muted">({g.from === 'config' ? 'routing file or preset' : 'stored'})</span>
            </li>
          ))}
          {rows.length === 0 && <li>No guardrail applies.</li>}
        </ol>
      )}
    </section>
  );
}
