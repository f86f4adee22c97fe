import { memo } from 'react';
import type { Message } from '../api/client';
import { copyText, Markdown } from '../markdown';
import { MessageAttachments } from './Attachments';

/** A `tool` message names the call it answers (OpenAI's shape; the conversation API stores none yet). */
type Shown = Message & { tool_call_id?: string | null };

export interface MessageActions {
  busy: boolean;
  onEdit: (m: Message) => void;
  onRegenerate: (m: Message) => void;
  onBranch: (m: Message, step: number) => void;
}

const prettyJson = (text: string | undefined) => {
  if (!text) return '';
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
};

/** The body of a message: Markdown for replies, tool calls and results as code, the failure reason. */
export function MessageBody({ m }: { m: Shown }) {
  const calls = m.tool_calls ?? [];
  return (
    <>
      {m.role === 'assistant' ? (
        m.content || calls.length === 0 ? (
          m.content ? (
            <Markdown text={m.content} />
          ) : m.status === 'complete' ? (
            <p className="muted plain">(empty reply)</p>
          ) : null
        ) : null
      ) : m.role === 'tool' ? (
        <div className="tool">
          <span className="tool-label">Tool result{m.tool_call_id ? ` (${m.tool_call_id})` : ''}</span>
          <pre>{prettyJson(m.content)}</pre>
        </div>
      ) : (
        <p className="plain">{m.content}</p>
      )}
      {m.attachments && m.attachments.length > 0 && <MessageAttachments ids={m.attachments} />}
      {calls.map((c, i) => (
        <div className="tool" key={c.id ?? i} data-testid="tool-call">
          <span className="tool-label">
            Tool call: <code>{c.function?.name ?? '?'}</code>
          </span>
          <pre>{prettyJson(c.function?.arguments)}</pre>
        </div>
      ))}
      {m.error && m.status !== 'complete' && (
        <p className="msg-error" data-testid="msg-error">
          {m.status === 'partial' ? 'Stopped: ' : 'Failed: '}
          {m.error}
        </p>
      )}
    </>
  );
}

/** One finished message; memoised so a streaming reply does not re-render (or re-sanitise) the thread. */
export const ChatMessage = memo(function ChatMessage({
  m,
  actions,
}: {
  m: Message;
  actions: MessageActions;
}) {
  const siblings = m.sibling_ids ?? [];
  const at = siblings.indexOf(m.id);
  return (
    <li className={`msg ${m.role}`} data-testid={`msg-${m.role}`}>
      <div className="msg-head">
        <span className="role">
          {m.role === 'user' ? 'You' : m.role === 'tool' ? 'Tool' : (m.model ?? m.role)}
        </span>
        {m.status !== 'complete' && <span className={`badge status-${m.status}`}>{m.status}</span>}
        {siblings.length > 1 && (
          <fieldset className="branches" aria-label="Branches">
            <button
              type="button"
              className="icon"
              aria-label="Previous branch"
              disabled={actions.busy || at === 0}
              onClick={() => actions.onBranch(m, -1)}
            >
              ‹
            </button>
            <span className="branch-pos">
              {at + 1} / {siblings.length}
            </span>
            <button
              type="button"
              className="icon"
              aria-label="Next branch"
              disabled={actions.busy || at === siblings.length - 1}
              onClick={() => actions.onBranch(m, 1)}
            >
              ›
            </button>
          </fieldset>
        )}
      </div>
      <MessageBody m={m} />
      {!actions.busy && (
        <div className="row actions">
          {m.role === 'user' && (
            <button type="button" onClick={() => actions.onEdit(m)}>
              Edit
            </button>
          )}
          {m.role === 'assistant' && (
            <button type="button" onClick={() => actions.onRegenerate(m)}>
              Regenerate
            </button>
          )}
          {m.content && (
            <button
              type="button"
              aria-label="Copy message"
              onClick={(e) => copyText(m.content ?? '', e.currentTarget)}
            >
              Copy
            </button>
          )}
        </div>
      )}
    </li>
  );
});
