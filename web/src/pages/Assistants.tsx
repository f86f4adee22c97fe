import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { errorText } from '../App';
import { type Assistant, api, type Model, type User } from '../api/client';

type Draft = {
  id: string | null;
  name: string;
  model: string;
  system_prompt: string;
  temperature: string;
  max_tokens: string;
  /** Visible to every user (the console's assistants are for the team); fixed once created. */
  shared: boolean;
};
const empty: Draft = {
  id: null,
  name: '',
  model: '',
  system_prompt: '',
  temperature: '',
  max_tokens: '',
  shared: true,
};

/**
 * Admins manage every assistant and choose whether a new one is shared. A plain user creates, edits and
 * deletes their own private assistants and sees the shared ones read-only: the server refuses them
 * shared assistants (403 "shared assistants are managed by admins"), so no control for them is shown.
 */
export function AssistantsPage({ self }: { self: User }) {
  const isAdmin = self.role === 'admin';
  const blank: Draft = { ...empty, shared: isAdmin };
  const manageable = (a: Assistant) => isAdmin || a.owner_id === self.id;
  const [list, setList] = useState<Assistant[]>([]);
  // Undefined while loading: a draft saved before the list arrives would have no model and be refused.
  const [loadedModels, setModels] = useState<Model[]>();
  const models = loadedModels ?? [];
  const [draft, setDraft] = useState<Draft>(blank);
  const [error, setError] = useState('');
  const load = useCallback(
    () =>
      api.assistants().then(
        (a) => setList(a.data),
        (e) => setError(errorText(e)),
      ),
    [],
  );
  useEffect(() => {
    void load();
    api.models().then(
      (m) => setModels(m.data),
      (e) => {
        setModels([]);
        setError(errorText(e));
      },
    );
  }, [load]);

  const save = async (e: FormEvent) => {
    e.preventDefault();
    const params: { temperature?: number; max_tokens?: number } = {};
    if (draft.temperature !== '') params.temperature = Number(draft.temperature);
    if (draft.max_tokens !== '') params.max_tokens = Number(draft.max_tokens);
    const body = {
      name: draft.name,
      model: draft.model || models[0]?.id || '',
      system_prompt: draft.system_prompt,
      params,
    };
    try {
      if (draft.id) await api.updateAssistant(draft.id, body);
      else await api.createAssistant({ ...body, shared: draft.shared });
      setDraft(blank);
      setError('');
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const edit = (a: Assistant) =>
    setDraft({
      id: a.id,
      name: a.name,
      model: a.model,
      system_prompt: a.system_prompt,
      temperature: a.params.temperature?.toString() ?? '',
      max_tokens: a.params.max_tokens?.toString() ?? '',
      shared: a.shared,
    });

  const set = (k: keyof Draft) => (e: { target: { value: string } }) =>
    setDraft({ ...draft, [k]: e.target.value });

  return (
    <section className="page">
      <h1>Assistants</h1>
      <form className="stack" onSubmit={save} aria-label={draft.id ? 'Edit assistant' : 'Create assistant'}>
        <h2>{draft.id ? `Edit ${draft.name}` : 'New assistant'}</h2>
        <div className="row">
          <label>
            Name
            <input value={draft.name} onChange={set('name')} required maxLength={100} />
          </label>
          <label>
            Model
            <select value={draft.model || models[0]?.id || ''} onChange={set('model')}>
              {models.map((m) => (
                <option key={m.id}>{m.id}</option>
              ))}
            </select>
          </label>
          <label>
            Temperature
            <input
              type="number"
              min={0}
              max={2}
              step={0.1}
              value={draft.temperature}
              onChange={set('temperature')}
            />
          </label>
          <label>
            Max tokens
            <input type="number" min={1} value={draft.max_tokens} onChange={set('max_tokens')} />
          </label>
        </div>
        {isAdmin ? (
          <label className="inline">
            <input
              type="checkbox"
              checked={draft.shared}
              disabled={!!draft.id}
              onChange={(e) => setDraft({ ...draft, shared: e.target.checked })}
            />
            Shared with every user
            <span className="muted">
              {draft.id ? '(set when the assistant was created)' : '(otherwise only you can use it)'}
            </span>
          </label>
        ) : (
          <p className="muted">
            Your assistants are private: only you can use them. Shared ones are managed by administrators.
          </p>
        )}
        <label>
          System prompt
          <textarea rows={4} value={draft.system_prompt} onChange={set('system_prompt')} />
        </label>
        <div className="row">
          <button type="submit" disabled={!draft.model && models.length === 0}>
            {draft.id ? 'Save assistant' : 'Create assistant'}
          </button>
          {loadedModels === undefined && <span className="muted">Loading models…</span>}
          {loadedModels?.length === 0 && <span className="muted">No models are configured.</span>}
          {draft.id && (
            <button type="button" onClick={() => setDraft(blank)}>
              Cancel
            </button>
          )}
        </div>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table className="cards">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Model</th>
            <th scope="col">Who can use it</th>
            <th scope="col">System prompt</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list.map((a) => (
            <tr key={a.id}>
              <th scope="row">{a.name}</th>
              <td data-label="Model">{a.model}</td>
              <td data-label="Who can use it">{a.shared ? 'Every user' : 'Only its owner'}</td>
              <td className="clip" data-label="System prompt">
                {a.system_prompt}
              </td>
              <td className="row actions">
                {manageable(a) ? (
                  <>
                    <button type="button" onClick={() => edit(a)} aria-label={`Edit ${a.name}`}>
                      Edit
                    </button>
                    <button
                      type="button"
                      aria-label={`Delete ${a.name}`}
                      onClick={async () => {
                        if (!confirm(`Delete the assistant “${a.name}”?`)) return;
                        await api.deleteAssistant(a.id).catch((err) => setError(errorText(err)));
                        await load();
                      }}
                    >
                      Delete
                    </button>
                  </>
                ) : (
                  <span className="muted">Managed by administrators</span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
