/**
 * A Messages API request (https://docs.anthropic.com/en/api/messages) in Colloquy's internal format (OpenAI
 * chat completions), for every upstream that does not speak Messages itself. Pure; the client's own body
 * rides along under NATIVE_REQUEST so an Anthropic deployment gets it untouched instead.
 */
import { AppError } from '../../core/errors.js';
import {
  type ChatCompletionRequest,
  type ChatMessage,
  type ContentPart,
  NATIVE_REQUEST,
  type ThinkingBlock,
  type ToolCall,
} from '../../providers/types.js';
import type { CountTokensRequest, MessagesRequest } from './schemas.js';

type Block = { type: string; [key: string]: unknown };
type Source = { type?: string; media_type?: string; data?: string; url?: string };

/** Client headers a same-protocol upstream may receive (the documented allow-list); never the client's key. */
export const FORWARDED_HEADERS = ['anthropic-version', 'anthropic-beta'] as const;

const invalid = (message: string, param: string) => new AppError('invalid_request', message, { param });

function textOf(blocks: Block[], param: string): string {
  let text = '';
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i]!;
    if (block.type !== 'text' || typeof block.text !== 'string')
      throw invalid(`only text blocks are allowed here, not '${block.type}'`, `${param}[${i}]`);
    text = i === 0 ? block.text : `${text}\n${block.text}`;
  }
  return text;
}

function imagePart(source: Source, param: string): ContentPart {
  if (source.type === 'base64' && source.media_type && typeof source.data === 'string')
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  if (source.type === 'url' && typeof source.url === 'string')
    return { type: 'image_url', image_url: { url: source.url } };
  throw invalid('image sources must be base64 (with media_type) or url', `${param}.source`);
}

function documentPart(source: Source, param: string): ContentPart {
  if (source.type === 'base64' && source.media_type && typeof source.data === 'string')
    return { type: 'file', file: { file_data: `data:${source.media_type};base64,${source.data}` } };
  if (source.type === 'text' && typeof source.data === 'string') return { type: 'text', text: source.data };
  throw invalid(
    'documents must be base64 or text sources for this model (url and file sources need an Anthropic model)',
    `${param}.source`,
  );
}

/** The user-visible parts of a user turn (text, images, documents), in order. */
function userPart(block: Block, param: string): ContentPart {
  switch (block.type) {
    case 'text':
      return { type: 'text', text: String(block.text ?? '') };
    case 'image':
      return imagePart((block.source ?? {}) as Source, param);
    case 'document':
      return documentPart((block.source ?? {}) as Source, param);
    default:
      throw invalid(`content blocks of type '${block.type}' need an Anthropic model`, `${param}.type`);
  }
}

function toolResultContent(block: Block, param: string): string | ContentPart[] {
  const content = block.content;
  if (content == null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid('tool_result content must be a string or blocks', param);
  const parts = (content as Block[]).map((b, i) => userPart(b, `${param}.content[${i}]`));
  return parts.every((p) => p.type === 'text') ? parts.map((p) => p.text).join('\n') : parts;
}

/**
 * A user turn, onto `messages`: its tool results first (each a `tool` message, as OpenAI requires), then the
 * rest as one user message: text alone when the turn has no image or document (no part objects made for it).
 */
function pushUserMessages(messages: ChatMessage[], blocks: Block[], param: string) {
  let media = false;
  for (const block of blocks)
    if (block.type !== 'text' && block.type !== 'tool_result') {
      media = true;
      break;
    }
  const parts: ContentPart[] = [];
  let text: string | undefined;
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i]!;
    if (block.type === 'tool_result') {
      const where = `${param}[${i}]`;
      if (typeof block.tool_use_id !== 'string') throw invalid('tool_result needs tool_use_id', where);
      const content = toolResultContent(block, where);
      // OpenAI has no error flag on a tool result: the model reads it from the text.
      const flagged = block.is_error === true && typeof content === 'string' ? `Error: ${content}` : content;
      messages.push({ role: 'tool', tool_call_id: block.tool_use_id, content: flagged });
    } else if (media) parts.push(userPart(block, `${param}[${i}]`));
    else {
      const part = String(block.text ?? '');
      text = text === undefined ? part : `${text}\n${part}`;
    }
  }
  if (text !== undefined) messages.push({ role: 'user', content: text });
  else if (parts.length) {
    // A document with a text source is a text part: such a turn is still text alone.
    const onlyText = parts.every((p) => p.type === 'text');
    messages.push({ role: 'user', content: onlyText ? parts.map((p) => p.text).join('\n') : parts });
  }
}

function assistantMessage(blocks: Block[], param: string): ChatMessage {
  let text = '';
  const toolCalls: ToolCall[] = [];
  const thinking: ThinkingBlock[] = [];
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i]!;
    switch (block.type) {
      case 'text':
        text += String(block.text ?? '');
        break;
      case 'tool_use':
        toolCalls.push({
          id: String(block.id),
          type: 'function',
          function: { name: String(block.name), arguments: JSON.stringify(block.input ?? {}) },
        });
        break;
      case 'thinking':
        thinking.push({
          type: 'thinking',
          thinking: String(block.thinking ?? ''),
          ...(typeof block.signature === 'string' ? { signature: block.signature } : {}),
        });
        break;
      case 'redacted_thinking':
        thinking.push({ type: 'redacted_thinking', data: String(block.data ?? '') });
        break;
      default:
        throw invalid(
          `content blocks of type '${block.type}' need an Anthropic model`,
          `${param}[${i}].type`,
        );
    }
  }
  const message: ChatMessage = { role: 'assistant', content: text || (toolCalls.length ? null : '') };
  if (toolCalls.length) message.tool_calls = toolCalls;
  if (thinking.length) {
    message.thinking_blocks = thinking;
    message.reasoning_content = thinking.map((b) => (b.type === 'thinking' ? b.thinking : '')).join('');
  }
  return message;
}

/** The conversation (system included) in the internal format: also what count_tokens counts. */
export function toInternalMessages(body: CountTokensRequest): ChatMessage[] {
  const messages: ChatMessage[] = [];
  const system = body.system;
  if (typeof system === 'string') {
    if (system) messages.push({ role: 'system', content: system });
  } else if (system !== undefined) {
    const text = textOf(system as Block[], 'system');
    if (text) messages.push({ role: 'system', content: text });
  }
  const turns = body.messages;
  for (let i = 0; i < turns.length; i++) {
    const turn = turns[i]!;
    const content = turn.content as string | Block[];
    // A plain-text turn (most turns) is already in the internal format: no block, part or join to make. An
    // empty user turn says nothing (no message), an empty assistant turn stays an empty answer, as blocks do.
    if (typeof content === 'string') {
      if (turn.role !== 'user') messages.push({ role: 'assistant', content });
      else if (content) messages.push({ role: 'user', content });
      continue;
    }
    const param = `messages[${i}].content`;
    if (turn.role === 'user') pushUserMessages(messages, content, param);
    else messages.push(assistantMessage(content, param));
  }
  return messages;
}

function toolChoice(choice: MessagesRequest['tool_choice']): unknown {
  switch (choice?.type) {
    case 'auto':
      return 'auto';
    case 'any':
      return 'required';
    case 'none':
      return 'none';
    case 'tool':
      if (!choice.name) throw invalid("tool_choice of type 'tool' needs a name", 'tool_choice.name');
      return { type: 'function', function: { name: choice.name } };
    default:
      return undefined;
  }
}

/** A thinking budget as OpenAI's reasoning effort (the scale LiteLLM uses the other way round). */
const effortFor = (budget: number | undefined) =>
  budget === undefined || budget <= 2048 ? 'low' : budget <= 8192 ? 'medium' : 'high';

const USER_BLOCKS = new Set(['text', 'image', 'document', 'tool_result']);
const ASSISTANT_BLOCKS = new Set(['text', 'tool_use', 'thinking', 'redacted_thinking']);
const keep = (content: unknown, kinds: Set<string>) =>
  Array.isArray(content) ? (content as Block[]).filter((b) => kinds.has(b?.type)) : content;

/**
 * The part of a request the internal format can express: what a request that only Anthropic deployments
 * serve is reduced to for the gateway's own use (limits, budgets, the ledger's estimates), while the
 * upstream gets the client's body as it came. Server tools, container uploads, search results, document
 * URLs… must not refuse a request that never leaves Anthropic's protocol.
 */
function expressible(body: MessagesRequest): MessagesRequest {
  return {
    ...body,
    ...(Array.isArray(body.system) ? { system: keep(body.system, new Set(['text'])) as Block[] } : {}),
    ...(body.tools
      ? {
          tools: body.tools.filter((t) => {
            const type = (t as { type?: string }).type;
            return type === undefined || type === 'custom';
          }),
        }
      : {}),
    messages: body.messages.map((turn) => {
      const content = keep(turn.content, turn.role === 'user' ? USER_BLOCKS : ASSISTANT_BLOCKS) as Block[];
      if (turn.role !== 'user' || !Array.isArray(content)) return { ...turn, content };
      return {
        ...turn,
        content: content.flatMap((b): Block[] => {
          const source = b.source as Source | undefined;
          if (b.type === 'document' && source?.type !== 'base64' && source?.type !== 'text') return [];
          if (b.type === 'tool_result')
            return [{ ...b, content: keep(b.content, new Set(['text', 'image'])) }];
          return [b];
        }),
      };
    }),
  };
}

/**
 * The Messages request in the internal format. `passThroughOnly`: every deployment of the model is an
 * Anthropic one, so the translation only serves Colloquy's own bookkeeping and what it cannot express is
 * left out instead of refused.
 */
export function toInternalRequest(
  body: MessagesRequest,
  headers: Record<string, string | string[] | undefined>,
  options: { passThroughOnly?: boolean } = {},
): ChatCompletionRequest {
  const translatable = options.passThroughOnly ? expressible(body) : body;
  const request: ChatCompletionRequest = {
    model: body.model,
    messages: toInternalMessages(translatable),
    max_tokens: body.max_tokens,
  };
  if (body.stream) {
    request.stream = true;
    request.stream_options = { include_usage: true };
  }
  if (body.temperature !== undefined) request.temperature = body.temperature;
  if (body.top_p !== undefined) request.top_p = body.top_p;
  // OpenAI-compatible servers that sample with top-k (vLLM, Ollama, llama.cpp) take it as `top_k`.
  if (body.top_k !== undefined) request.top_k = body.top_k;
  if (body.stop_sequences?.length) request.stop = body.stop_sequences;
  if (body.metadata?.user_id) request.user = body.metadata.user_id;
  if (body.thinking?.type === 'enabled') request.reasoning_effort = effortFor(body.thinking.budget_tokens);
  if (translatable.tools?.length) {
    request.tools = translatable.tools.map((tool, i) => {
      const t = tool as { name: string; description?: string; input_schema?: unknown; type?: string };
      if (t.type !== undefined && t.type !== 'custom')
        throw invalid(`server tools ('${t.type}') need an Anthropic model`, `tools[${i}].type`);
      return {
        type: 'function' as const,
        function: {
          name: t.name,
          ...(t.description ? { description: t.description } : {}),
          parameters: t.input_schema ?? { type: 'object', properties: {} },
        },
      };
    });
    const choice = toolChoice(body.tool_choice);
    if (choice !== undefined) request.tool_choice = choice;
    if (body.tool_choice?.disable_parallel_tool_use) request.parallel_tool_calls = false;
  }
  request[NATIVE_REQUEST] = nativeMessagesRequest(body, headers);
  return request;
}

/** The client's own Messages body and its allow-listed headers, for an Anthropic deployment to get as they came. */
export function nativeMessagesRequest(
  body: MessagesRequest | CountTokensRequest,
  headers: Record<string, string | string[] | undefined>,
) {
  const forwarded: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string' && value) forwarded[name] = value;
  }
  return { protocol: 'messages' as const, body: body as Record<string, unknown>, headers: forwarded };
}
