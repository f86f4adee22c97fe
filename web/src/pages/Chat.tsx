import { type FormEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { errorText } from '../App';
import {
  type Assistant,
  api,
  type Conversation,
  type Message,
  type Model,
  type StreamHandlers,
} from '../api/client';
import { Markdown } from '../markdown';
import { type Pending, PendingChips, uploadErrorText, uploadFile } from './Attachments';
import { ChatMessage, type MessageActions } from './ChatMessage';
import { ConversationList } from './ConversationList';
import { useFollowScroll } from './follow-scroll';
import { emptySettings, parseSettings, type ReplySettingsDraft, ReplySettingsPanel } from './ReplySettings';

/** A reply streaming right now; one per conversation, kept while the user looks at another one. */
interface Live {
  generationId: string | null;
  /** The rows this request stored (the user message, the reply): hidden from a reloaded thread meanwhile. */
  ids: string[];
  userText: string | null;
  text: string;
  error: string | null;
}

/** The generation streaming in a conversation, kept in this tab so a reload re-joins it. */
const liveKey = (conversationId: string) => `colloquy.generation.${conversationId}`;

export const chatHash = (id: string | null) => (id ? `#/chat/${encodeURIComponent(id)}` : '#/chat');

/** The picker's value for a conversation: its assistant, else the model its last reply used. */
function targetOf(c: Conversation, messages: Message[]): string | null {
  if (c.assistant_id) return `assistant:${c.assistant_id}`;
  const last = messages.findLast((m) => m.role === 'assistant' && m.model);
  const model = last?.model ?? c.model;
  return model ? `model:${model}` : null;
}

/** The chat: conversations on the left, the open one (its id in the URL: #/chat/<id>) on the right. */
export function ChatPage({ routeId, userId }: { routeId: string | null; userId: string }) {
  const [conversations, setConversations] = useState<Conversation[] | null>(null);
  const [search, setSearch] = useState('');
  const [current, setCurrent] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [threadLoading, setThreadLoading] = useState(false);
  const [models, setModels] = useState<Model[]>([]);
  const [assistants, setAssistants] = useState<Assistant[]>([]);
  const [target, setTarget] = useState('');
  const [draft, setDraft] = useState('');
  // Files attached in the composer, sent with the next message.
  const [pending, setPending] = useState<Pending[]>([]);
  const [dragging, setDragging] = useState(false);
  // The parameter panel: sent with every message, edit and regenerate while set.
  const [settings, setSettings] = useState<ReplySettingsDraft>(emptySettings);
  const parsedSettings = parseSettings(settings);
  const fileInput = useRef<HTMLInputElement>(null);
  const [lives, setLives] = useState<Record<string, Live>>({});
  const [editing, setEditing] = useState<{ id: string; text: string } | null>(null);
  const [renaming, setRenaming] = useState<{ id: string; title: string } | null>(null);
  const [error, setError] = useState('');
  // At phone width the conversation list is a drawer over the thread, opened from the thread's header.
  const [listOpen, setListOpen] = useState(false);
  // The conversation on screen, read by streams that finish later (they must not write into another one).
  const openId = useRef<string | null>(null);
  const controllers = useRef(new Map<string, AbortController>());
  const searchRef = useRef(search);
  searchRef.current = search;

  const live = current ? lives[current.id] : undefined;

  const loadList = useCallback(async () => {
    try {
      const list = (await api.conversations(searchRef.current.trim() || undefined)).data;
      setConversations(list);
      // The server titles a conversation from its first message: the heading follows the list.
      setCurrent((c) => (c ? (list.find((x) => x.id === c.id) ?? c) : c));
    } catch (err) {
      setError(errorText(err));
    }
  }, []);

  useEffect(() => {
    const t = setTimeout(() => loadList(), search ? 200 : 0);
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

  // The URL decides what is open: a click, a deep link, back/forward and a reload all come through here.
  // biome-ignore lint/correctness/useExhaustiveDependencies: drive reads refs; only the URL re-runs this
  useEffect(() => {
    setEditing(null);
    setError('');
    setListOpen(false);
    if (!routeId) {
      openId.current = null;
      setCurrent(null);
      setMessages([]);
      setThreadLoading(false);
      return;
    }
    if (openId.current === routeId) return; // just created here
    openId.current = routeId;
    setMessages([]);
    setThreadLoading(true);
    (async () => {
      try {
        const [c, m] = await Promise.all([api.conversation(routeId), api.messages(routeId)]);
        if (openId.current !== routeId) return;
        setCurrent(c);
        setMessages(m.data);
        const t = targetOf(c, m.data);
        if (t) setTarget(t);
        // A reply still streaming that this tab started (before a reload): follow it again.
        const generationId = sessionStorage.getItem(liveKey(routeId));
        if (generationId && m.data.some((x) => x.status === 'streaming') && !controllers.current.has(routeId))
          void drive(routeId, null, true, (h, signal) => api.rejoin(generationId, 0, h, signal));
        else if (generationId) sessionStorage.removeItem(liveKey(routeId));
      } catch (err) {
        if (openId.current !== routeId) return;
        setCurrent(null);
        setError(errorText(err));
      } finally {
        if (openId.current === routeId) setThreadLoading(false);
      }
    })();
  }, [routeId]);

  const reload = async (id: string) => {
    const m = (await api.messages(id)).data;
    if (openId.current === id) setMessages(m);
  };

  /** Runs one streamed request; the reply grows on screen only while its conversation is open. */
  const run = (
    conversationId: string,
    path: string,
    body: unknown,
    userText: string | null,
    onRefused?: () => void,
  ) => drive(conversationId, userText, false, (h, signal) => api.stream(path, body, h, signal), onRefused);

  /**
   * Follows a generation's events: from the request that started it, or re-joined after a reload. When the
   * server closes the stream (`event: closed`: the access token expired mid-reply) the generation runs on:
   * a refreshed token re-joins it from the last event seen.
   */
  const drive = async (
    conversationId: string,
    userText: string | null,
    rejoined: boolean,
    open: (h: StreamHandlers, signal: AbortSignal) => Promise<void>,
    /** Called with the refusal shown (same render): the composer gets back what was sent. */
    onRefused?: () => void,
  ) => {
    const controller = new AbortController();
    controllers.current.set(conversationId, controller);
    const patch = (f: (l: Live) => Live) =>
      setLives((all) => (all[conversationId] ? { ...all, [conversationId]: f(all[conversationId]) } : all));
    setError('');
    setLives((all) => ({
      ...all,
      [conversationId]: { generationId: null, ids: [], userText, text: '', error: null },
    }));
    let failure = '';
    let generationId: string | null = null;
    let lastId = 0;
    let closed = false;
    const handlers: StreamHandlers = {
      onEvent: (type, data, id) => {
        if (id) lastId = id;
        if (type === 'closed') closed = true;
        else if (type === 'message') {
          // Re-joined after a reload, the user message is already in the thread: only the reply is live.
          const mid = (data.message as { id?: string } | undefined)?.id;
          if (mid && !rejoined) patch((l) => ({ ...l, ids: [...l.ids, mid] }));
        } else if (type === 'start') {
          generationId = String(data.generation_id ?? '');
          sessionStorage.setItem(liveKey(conversationId), generationId);
          const gid = generationId;
          patch((l) => ({
            ...l,
            generationId: gid,
            text: '',
            ids: [...l.ids, String(data.message_id ?? '')],
          }));
          // A new conversation is listed (and titled) from its first message on, not when the reply ends.
          void loadList();
        } else if (type === 'delta') patch((l) => ({ ...l, text: l.text + String(data.content ?? '') }));
        else if (type === 'error') {
          const e = data.error as { code?: string; message?: string } | undefined;
          if (e?.code !== 'cancelled') patch((l) => ({ ...l, error: e?.message ?? 'the reply failed' }));
        }
        if (type === 'done' || type === 'error') sessionStorage.removeItem(liveKey(conversationId));
      },
    };
    try {
      await open(handlers, controller.signal);
      for (let i = 0; closed && generationId && i < 5 && !controller.signal.aborted; i++) {
        closed = false;
        if (!(await api.refresh())) {
          api.onSignedOut();
          break;
        }
        await api.rejoin(generationId, lastId, handlers, controller.signal);
      }
    } catch (err) {
      // Refused before anything was stored (a stream that failed later is kept, with its reason, on the message).
      if (!controller.signal.aborted) failure = errorText(err);
      if (rejoined) sessionStorage.removeItem(liveKey(conversationId));
    } finally {
      controllers.current.delete(conversationId);
      setLives((all) => {
        const { [conversationId]: _, ...rest } = all;
        return rest;
      });
      await reload(conversationId).catch(() => {});
      if (failure) onRefused?.();
      if (failure && openId.current === conversationId) setError(failure);
      await loadList();
    }
  };

  const send = async (e: FormEvent) => {
    e.preventDefault();
    const content = draft.trim();
    if (!content || live) return;
    let conversation = current;
    const [kind, id] = splitTarget(target);
    try {
      if (!conversation) {
        conversation = await api.createConversation(
          kind === 'assistant' ? { assistant_id: id } : { model: id },
        );
        openId.current = conversation.id;
        setCurrent(conversation);
        setMessages([]);
        location.hash = chatHash(conversation.id);
      }
    } catch (err) {
      setError(errorText(err));
      return;
    }
    setDraft('');
    const sent = pending;
    const attachments = sent.flatMap((p) => (p.file ? [p.file.id] : []));
    setPending([]);
    // Refused (a model without vision, a limit): the text and files come back for another try.
    await run(
      conversation.id,
      `/api/conversations/${conversation.id}/messages`,
      withModel(conversation, attachments.length ? { content, attachments } : { content }),
      content,
      () => {
        setPending((now) => (now.length ? now : sent));
        setDraft((d) => d || content);
      },
    );
  };

  const patchPending = (key: string, f: (p: Pending) => Pending) =>
    setPending((all) => all.map((p) => (p.key === key ? f(p) : p)));

  /** Starts uploading each file; its chip shows progress, then a preview (or why it was refused). */
  const attach = (files: FileList | File[]) => {
    for (const file of Array.from(files)) {
      const key = `${Date.now()}-${Math.random()}`;
      const up = uploadFile(file, (progress) => patchPending(key, (p) => ({ ...p, progress })));
      setPending((all) => [
        ...all,
        { key, name: file.name, bytes: file.size, progress: 0, file: null, error: null, abort: up.abort },
      ]);
      up.done.then(
        (meta) => patchPending(key, (p) => ({ ...p, progress: 1, file: meta })),
        (err) => {
          if ((err as { code?: string }).code === 'cancelled')
            setPending((all) => all.filter((p) => p.key !== key));
          else patchPending(key, (p) => ({ ...p, error: uploadErrorText(file.name, err) }));
        },
      );
    }
  };

  const removePending = (key: string) => {
    const p = pending.find((x) => x.key === key);
    if (p && !p.file && !p.error) p.abort();
    setPending((all) => all.filter((x) => x.key !== key));
  };
  const uploading = pending.some((p) => !p.file && !p.error);

  /**
   * Model conversations reply with the model in the picker (an assistant's conversation keeps its own); every
   * request carries the reply settings of the panel.
   */
  const withModel = <B extends object>(c: Conversation, body: B): B & { model?: string } => {
    const [kind, id] = splitTarget(target);
    const withSettings = { ...body, ...('body' in parsedSettings ? parsedSettings.body : {}) };
    return kind === 'model' && !c.assistant_id && id ? { ...withSettings, model: id } : withSettings;
  };

  const stop = useCallback(async () => {
    const id = openId.current;
    if (!id) return;
    const l = lives[id];
    if (l?.generationId) await api.cancel(l.generationId);
    else controllers.current.get(id)?.abort();
  }, [lives]);

  // Escape stops the reply streaming in the open conversation (unless it closes an edit or a rename first).
  useEffect(() => {
    if (!live) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && !e.defaultPrevented && !editing && !renaming) void stop();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [live, stop, editing, renaming]);

  const pick = (value: string) => {
    // An assistant is chosen when a conversation starts: picking one in an open conversation starts a new one.
    if (value.startsWith('assistant:') && current && current.assistant_id !== value.slice(10)) {
      location.hash = chatHash(null);
    }
    setTarget(value);
  };

  // A boolean, not the live reply: the finished messages must not re-render with every streamed chunk.
  const busy = !!live || !!editing;
  // biome-ignore lint/correctness/useExhaustiveDependencies: run, withModel and reload read refs and the picker
  const actions: MessageActions = useMemo(
    () => ({
      busy,
      onEdit: (m) => setEditing({ id: m.id, text: m.content }),
      onRegenerate: (m) =>
        current &&
        run(
          current.id,
          `/api/conversations/${current.id}/messages/${m.id}/regenerate`,
          withModel(current, {}),
          null,
        ),
      onBranch: async (m, step) => {
        if (!current || !m.sibling_ids) return;
        const next = m.sibling_ids[m.sibling_ids.indexOf(m.id) + step];
        if (!next) return;
        try {
          setCurrent(await api.updateConversation(current.id, { active_leaf_id: next }));
          await reload(current.id);
        } catch (err) {
          setError(errorText(err));
        }
      },
    }),
    [busy, current, target],
  );

  const saveEdit = async (e: FormEvent) => {
    e.preventDefault();
    if (!current || !editing?.text.trim()) return;
    const { id, text } = editing;
    setEditing(null);
    await run(
      current.id,
      `/api/conversations/${current.id}/messages/${id}/edit`,
      withModel(current, editAttachments(messages, id, { content: text })),
      text,
    );
  };

  const rename = async (e: FormEvent) => {
    e.preventDefault();
    if (!renaming) return;
    try {
      const updated = await api.updateConversation(renaming.id, { title: renaming.title.trim() || null });
      if (current?.id === updated.id) setCurrent(updated);
      setRenaming(null);
      await loadList();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const remove = async (c: Conversation) => {
    if (!confirm(`Delete “${c.title ?? 'Untitled'}”? This cannot be undone.`)) return;
    await api.deleteConversation(c.id).catch((err) => setError(errorText(err)));
    if (current?.id === c.id) location.hash = chatHash(null);
    await loadList();
  };

  const shown = live ? messages.filter((m) => !live.ids.includes(m.id)) : messages;
  const follow = useFollowScroll(
    routeId,
    `${shown.map((m) => `${m.id}:${m.content.length}`).join()}|${live?.userText}|${live?.text.length}|${live?.error}|${threadLoading}`,
  );

  return (
    <div className={listOpen ? 'chat list-open' : 'chat'}>
      <ConversationList
        conversations={conversations}
        currentId={current?.id ?? null}
        replying={lives}
        search={search}
        onSearch={setSearch}
        renaming={renaming}
        setRenaming={setRenaming}
        onRename={rename}
        onRemove={remove}
        onClose={() => setListOpen(false)}
      />
      <section className="thread" aria-label="Chat">
        <div className="thread-head">
          <button
            type="button"
            className="list-toggle"
            aria-expanded={listOpen}
            aria-controls="conversation-list"
            onClick={() => setListOpen((o) => !o)}
          >
            Conversations
          </button>
          <h1>{current ? (current.title ?? 'Untitled') : routeId ? 'Loading…' : 'New chat'}</h1>
          <label>
            Model or assistant
            <select value={target} onChange={(e) => pick(e.target.value)} disabled={!!current?.assistant_id}>
              <optgroup label="Models">
                {models.map((m) => (
                  <option key={m.id} value={`model:${m.id}`}>
                    {m.id}
                  </option>
                ))}
              </optgroup>
              {(assistants.length > 0 || target.startsWith('assistant:')) && (
                <optgroup label="Assistants">
                  {assistants.map((a) => (
                    <option key={a.id} value={`assistant:${a.id}`}>
                      {a.name}
                    </option>
                  ))}
                  {target.startsWith('assistant:') &&
                    !assistants.some((a) => `assistant:${a.id}` === target) && (
                      <option value={target}>an assistant you cannot see</option>
                    )}
                </optgroup>
              )}
            </select>
          </label>
        </div>
        <div className="pane-wrap">
          <div className="pane" ref={follow.ref} onScroll={follow.onScroll}>
            <ol className="messages" aria-live="polite">
              {threadLoading && <li className="muted">Loading messages…</li>}
              {shown.map((m) =>
                editing?.id === m.id ? (
                  <li key={m.id} className={`msg ${m.role}`} data-testid={`msg-${m.role}`}>
                    <form onSubmit={saveEdit} className="edit">
                      <label className="sr-only" htmlFor="edit-text">
                        Edit message
                      </label>
                      <textarea
                        id="edit-text"
                        value={editing.text}
                        // biome-ignore lint/a11y/noAutofocus: the field the user just asked to edit
                        autoFocus
                        onChange={(e) => setEditing({ id: m.id, text: e.target.value })}
                        onKeyDown={(e) => e.key === 'Escape' && setEditing(null)}
                      />
                      <div className="row">
                        <button type="submit">Save and send</button>
                        <button type="button" onClick={() => setEditing(null)}>
                          Cancel
                        </button>
                      </div>
                    </form>
                  </li>
                ) : (
                  <ChatMessage key={m.id} m={m} actions={actions} />
                ),
              )}
              {live?.userText && (
                <li className="msg user">
                  <p className="plain">{live.userText}</p>
                </li>
              )}
              {live && (
                <li className="msg assistant streaming" data-testid="streaming">
                  <Markdown text={live.text || '…'} />
                  {live.error && (
                    <p className="msg-error" data-testid="msg-error">
                      Failed: {live.error}
                    </p>
                  )}
                </li>
              )}
            </ol>
          </div>
          {!follow.atEnd && (
            <button type="button" className="jump" onClick={follow.toEnd}>
              ↓ Jump to latest
            </button>
          )}
        </div>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <ReplySettingsPanel userId={userId} value={settings} onChange={setSettings} />
        <form
          className={`composer with-files${dragging ? ' dragging' : ''}`}
          onSubmit={send}
          onDragOver={(e) => {
            if (!e.dataTransfer.types.includes('Files')) return;
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={(e) => {
            if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDragging(false);
          }}
          onDrop={(e) => {
            if (!e.dataTransfer.files.length) return;
            e.preventDefault();
            setDragging(false);
            attach(e.dataTransfer.files);
          }}
        >
          <PendingChips items={pending} onRemove={removePending} />
          <label className="attach-button" title="Attach files (or drop them here)">
            Attach
            <span className="sr-only"> files</span>
            <input
              ref={fileInput}
              type="file"
              multiple
              className="sr-only"
              onChange={(e) => {
                if (e.target.files) attach(e.target.files);
                e.target.value = '';
              }}
            />
          </label>
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
            <button type="button" onClick={stop} title="Stop (Esc)">
              Stop
            </button>
          ) : (
            <button
              type="submit"
              disabled={!draft.trim() || !target || uploading || 'error' in parsedSettings}
            >
              Send
            </button>
          )}
        </form>
      </section>
    </div>
  );
}

/** An edit keeps the files the edited message carried. */
function editAttachments(messages: Message[], id: string, body: { content: string }) {
  const ids = messages.find((m) => m.id === id)?.attachments;
  return ids?.length ? { ...body, attachments: ids } : body;
}

function splitTarget(target: string): [string, string] {
  const i = target.indexOf(':');
  return [target.slice(0, i), target.slice(i + 1)];
}
