import type { FormEvent } from 'react';
import type { Conversation } from '../api/client';
import { chatHash } from './Chat';

type Renaming = { id: string; title: string } | null;

/** The conversation list: search, rename, delete; at phone width a drawer over the thread. */
export function ConversationList({
  conversations,
  currentId,
  replying,
  search,
  onSearch,
  renaming,
  setRenaming,
  onRename,
  onRemove,
  onClose,
}: {
  conversations: Conversation[] | null;
  currentId: string | null;
  /** Conversations with a reply streaming right now. */
  replying: Record<string, unknown>;
  search: string;
  onSearch: (q: string) => void;
  renaming: Renaming;
  setRenaming: (r: Renaming) => void;
  onRename: (e: FormEvent) => void;
  onRemove: (c: Conversation) => void;
  onClose: () => void;
}) {
  return (
    <aside className="sidebar" id="conversation-list" aria-label="Conversations">
      {/* The drawer covers the thread at phone width: it closes from inside. */}
      <button type="button" className="list-toggle" onClick={onClose}>
        Close list
      </button>
      <a className="button" href={chatHash(null)}>
        New chat
      </a>
      <label className="search">
        Search conversations
        <input type="search" value={search} onChange={(e) => onSearch(e.target.value)} />
      </label>
      <ul className="conversations">
        {(conversations ?? []).map((c) => (
          <li key={c.id} className={c.id === currentId ? 'active' : undefined}>
            {renaming?.id === c.id ? (
              <form onSubmit={onRename} className="rename">
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
                <a
                  className="link"
                  href={chatHash(c.id)}
                  aria-current={c.id === currentId ? 'true' : undefined}
                >
                  {c.title ?? 'Untitled'}
                  {/* Only admins receive `flagged`: a crisis referral answered in this conversation. */}
                  {c.flagged && (
                    <span
                      className="badge flagged"
                      title={`Flagged: ${c.flagged.reason} (${c.flagged.guardrail})`}
                    >
                      flagged
                    </span>
                  )}
                  {!!replying[c.id] && <span className="sr-only"> (replying)</span>}
                  {!!replying[c.id] && <span className="dot" aria-hidden="true" />}
                </a>
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
                  onClick={() => onRemove(c)}
                >
                  ✕
                </button>
              </>
            )}
          </li>
        ))}
        {conversations === null && <li className="muted">Loading conversations…</li>}
        {conversations?.length === 0 && <li className="muted">No conversations</li>}
      </ul>
    </aside>
  );
}
