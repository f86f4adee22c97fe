import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { errorText } from '../App';
import { type Assistant, api, type Conversation, type Message, type Model } from '../api/client';
import { Markdown } from '../markdown';

interface Live {
  generationId: string | null;
  userText: string | null;
  text: string;
}

export function ChatPage() {
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [search, setSearch] = useState('');
  const [current, setCurrent] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [models, setModels] = useState<Model[]>([]);
  const [assistants, setAssistants] = useState<Assistant[]>([]);
  const [target, setTarget] = useState('');
  const [draft, setDraft] = useState('');
  const [live, setLive] = useState<Live | null>(null);
  const [editing, setEditing] = useState<{ id: string; text: string } | null>(null);
  const [renaming, setRenaming] = useState<{ id: string; title: string } | null>(null);
  const [error, setError] = useState('');
  const abort = useRef<AbortController | null>(null);

  const loadList = useCallback(async (q: string) => {
    try {
      setConversations((await api.conversations(q.trim() || undefined)).data);
    } catch (err) {
      setError(errorText(err));
    }
  }, []);

  useEffect(() => {
    const t = setTimeout(() => loadList(search), 200);
    return () => clearTimeout(t);
  }, [search, loadList]);

  useEffect(() => {
    api
      .models()
      .then((m) => {
        setModels(m.data);
        setTarget((t) => t || (m.data[0] ? `model:${m.data[0].id}` : ''));
      })
      .catch((err) => setError(errorText(err)));
    api
      .assistants()
      .then((a) => setAssistants(a.data))
      .catch(() => {});
  }, []);

  const open = async (c: Conversation) => {
    setCurrent(c);
    setEditing(null);
    setMessages((await api.messages(c.id)).data);
  };

  const reload = async (id: string) => {
    setMessages((await api.messages(id)).data);
    await loadList(search);
  };

  /** Runs one streamed request and shows the reply growing, then reloads the branch from the server. */
  const run = async (conversationId: string, path: string, body: unknown, userText: string | null) => {
    const controller = new AbortController();
    abort.current = controller;
    setError('');
    setLive({ generationId: null, userText, text: '' });
    try {
      await api.stream(
        path,
        body,
        {
          onEvent: (type, data) => {
            if (type === 'start')
              setLive((l) => l && { ...l, generationId: String(data.generation_id ?? '') });
            else if (type === 'delta')
              setLive((l) => l && { ...l, text: l.text + String(data.content ?? '') });
            else if (type === 'error') {
              const e = data.error as { code?: string; message?: string } | undefined;
              if (e?.code !== 'cancelled') setError(e?.message ?? 'the reply failed');
            }
          },
        },
        controller.signal,
      );
    } catch (err) {
      if (!controller.signal.aborted) setError(errorText(err));
    } finally {
      abort.current = null;
      setLive(null);
      await reload(conversationId).catch(() => {});
    }
  };

  const send = async (e: FormEvent) => {
    e.preventDefault();
    const content = draft.trim();
    if (!content || live) return;
    let conversation = current;
    try {
      if (!conversation) {
        const [kind, id] = splitTarget(target);
        conversation = await api.createConversation(
          kind === 'assistant' ? { assistant_id: id } : { model: id },
        );
        setCurrent(conversation);
        setMessages([]);
      }
    } catch (err) {
      setError(errorText(err));
      return;
    }
    setDraft('');
    const [kind, id] = splitTarget(target);
    const body = kind === 'model' && !conversation.assistant_id ? { content, model: id } : { content };
    await run(conversation.id, `/api/conversations/${conversation.id}/messages`, body, content);
  };

  const stop = async () => {
    if (live?.generationId) await api.cancel(live.generationId);
    else abort.current?.abort();
  };

  const regenerate = (m: Message) =>
    current && run(current.id, `/api/conversations/${current.id}/messages/${m.id}/regenerate`, {}, null);

  const saveEdit = async (e: FormEvent) => {
    e.preventDefault();
    if (!current || !editing?.text.trim()) return;
    const { id, text } = editing;
    setEditing(null);
    await run(current.id, `/api/conversations/${current.id}/messages/${id}/edit`, { content: text }, text);
  };

  const switchBranch = async (m: Message, step: number) => {
    if (!current || !m.sibling_ids) return;
    const i = m.sibling_ids.indexOf(m.id) + step;
    const next = m.sibling_ids[i];
    if (!next) return;
    try {
      setCurrent(await api.updateConversation(current.id, { active_leaf_id: next }));
      await reload(current.id);
    } catch (err) {
      setError(errorText(err));
    }
  };

  const rename = async (e: FormEvent) => {
    e.preventDefault();
    if (!renaming) return;
    try {
      const updated = await api.updateConversation(renaming.id, { title: renaming.title.trim() || null });
      if (current?.id === updated.id) setCurrent(updated);
      setRenaming(null);
      await loadList(search);
    } catch (err) {
      setError(errorText(err));
    }
  };

  const remove = async (c: Conversation) => {
    if (!confirm(`Delete “${c.title ?? 'Untitled'}”? This cannot be undone.`)) return;
    await api.deleteConversation(c.id).catch((err) => setError(errorText(err)));
    if (current?.id === c.id) {
      setCurrent(null);
      setMessages([]);
    }
    await loadList(search);
  };

  return (
    <div className="chat">
      <aside className="sidebar" aria-label="Conversations">
        <button
          type="button"
          onClick={() => {
            setCurrent(null);
            setMessages([]);
          }}
        >
          New chat
        </button>
        <label className="search">
          Search conversations
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <ul className="conversations">
          {conversations.map((c) => (
            <li key={c.id} className={c.id === current?.id ? 'active' : undefined}>
              {renaming?.id === c.id ? (
                <form onSubmit={rename} className="rename">
                  <label className="sr-only" htmlFor={`rename-${c.id}`}>
                    New title
                  </label>
                  <input
                    id={`rename-${c.id}`}
                    value={renaming.title}
                    // biome-ignore lint/a11y/noAutofocus: the field the user just asked for
                    autoFocus
                    onChange={(e) => setRenaming({ id: c.id, title: e.target.value })}
                    onKeyDown={(e) => e.key === 'Escape' && setRenaming(null)}
                  />
                  <button type="submit">Save</button>
                </form>
              ) : (
                <>
                  <button type="button" className="link" onClick={() => open(c)}>
                    {c.title ?? 'Untitled'}
                  </button>
                  <button
                    type="button"
                    className="icon"
                    aria-label={`Rename ${c.title ?? 'Untitled'}`}
                    onClick={() => setRenaming({ id: c.id, title: c.title ?? '' })}
                  >
                    ✎
                  </button>
                  <button
                    type="button"
                    className="icon"
                    aria-label={`Delete ${c.title ?? 'Untitled'}`}
                    onClick={() => remove(c)}
                  >
                    ✕
                  </button>
                </>
              )}
            </li>
          ))}
          {conversations.length === 0 && <li className="muted">No conversations</li>}
        </ul>
      </aside>
      <section className="thread" aria-label="Chat">
        <div className="thread-head">
          <h1>{current ? (current.title ?? 'Untitled') : 'New chat'}</h1>
          <label>
            Model or assistant
            <select
              value={target}
              onChange={(e) => setTarget(e.target.value)}
              disabled={!!current?.assistant_id}
            >
              <optgroup label="Models">
                {models.map((m) => (
                  <option key={m.id} value={`model:${m.id}`}>
                    {m.id}
                  </option>
                ))}
              </optgroup>
              {assistants.length > 0 && (
                <optgroup label="Assistants">
                  {assistants.map((a) => (
                    <option key={a.id} value={`assistant:${a.id}`}>
                      {a.name}
                    </option>
                  ))}
                </optgroup>
              )}
            </select>
          </label>
        </div>
        <ol className="messages" aria-live="polite">
          {messages.map((m) => (
            <li key={m.id} className={`msg ${m.role}`} data-testid={`msg-${m.role}`}>
              <div className="msg-head">
                <span className="role">{m.role === 'user' ? 'You' : (m.model ?? m.role)}</span>
                {m.status !== 'complete' && <span className="badge">{m.status}</span>}
                {m.sibling_ids && m.sibling_ids.length > 1 && (
                  <fieldset className="branches" aria-label="Branches">
                    <button
                      type="button"
                      className="icon"
                      aria-label="Previous branch"
                      disabled={!!live || m.sibling_ids.indexOf(m.id) === 0}
                      onClick={() => switchBranch(m, -1)}
                    >
                      ‹
                    </button>
                    <span className="branch-pos">
                      {m.sibling_ids.indexOf(m.id) + 1} / {m.sibling_ids.length}
                    </span>
                    <button
                      type="button"
                      className="icon"
                      aria-label="Next branch"
                      disabled={!!live || m.sibling_ids.indexOf(m.id) === m.sibling_ids.length - 1}
                      onClick={() => switchBranch(m, 1)}
                    >
                      ›
                    </button>
                  </fieldset>
                )}
              </div>
              {editing?.id === m.id ? (
                <form onSubmit={saveEdit} className="edit">
                  <label className="sr-only" htmlFor="edit-text">
                    Edit message
                  </label>
                  <textarea
                    id="edit-text"
                    value={editing.text}
                    onChange={(e) => setEditing({ id: m.id, text: e.target.value })}
                  />
                  <div className="row">
                    <button type="submit">Save and send</button>
                    <button type="button" onClick={() => setEditing(null)}>
                      Cancel
                    </button>
                  </div>
                </form>
              ) : m.role === 'assistant' ? (
                <Markdown text={m.content} />
              ) : (
                <p className="plain">{m.content}</p>
              )}
              {!live && !editing && (
                <div className="row actions">
                  {m.role === 'user' && (
                    <button type="button" onClick={() => setEditing({ id: m.id, text: m.content })}>
                      Edit
                    </button>
                  )}
                  {m.role === 'assistant' && (
                    <button type="button" onClick={() => regenerate(m)}>
                      Regenerate
                    </button>
                  )}
                </div>
              )}
            </li>
          ))}
          {live?.userText && (
            <li className="msg user">
              <p className="plain">{live.userText}</p>
            </li>
          )}
          {live && (
            <li className="msg assistant streaming" data-testid="streaming">
              <Markdown text={live.text || '…'} />
            </li>
          )}
        </ol>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <form className="composer" onSubmit={send}>
          <label className="sr-only" htmlFor="composer">
            Message
          </label>
          <textarea
            id="composer"
            placeholder="Send a message (Enter to send, Shift+Enter for a new line)"
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && !e.shiftKey) {
                e.preventDefault();
                e.currentTarget.form?.requestSubmit();
              }
            }}
          />
          {live ? (
            <button type="button" onClick={stop}>
              Stop
            </button>
          ) : (
            <button type="submit" disabled={!draft.trim() || !target}>
              Send
            </button>
          )}
        </form>
      </section>
    </div>
  );
}

function splitTarget(target: string): [string, string] {
  const i = target.indexOf(':');
  return [target.slice(0, i), target.slice(i + 1)];
}
