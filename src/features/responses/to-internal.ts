/**
 * An OpenAI Responses API request (https://platform.openai.com/docs/api-reference/responses/create) onto
 * Colloquy's internal chat-completions request, so every routed model serves it (issue 20). Pure.
 *
 * Items map onto chat messages: `instructions` → a system message; message items (input_text, input_image,
 * output_text) → user / assistant / system / developer messages; consecutive function_call items → one
 * assistant message's tool_calls (joined to the assistant message right before them); function_call_output
 * → a tool message. Reasoning items carry nothing a chat upstream can take and are left out.
 */
import { AppError } from '../../core/errors.js';
import type { ChatCompletionRequest, ChatMessage, ContentPart, Role } from '../../providers/types.js';

export interface ResponsesRequest {
  model: string;
  input?: string | ResponseInputItem[];
  instructions?: string | null;
  tools?: { type: string; name?: string; description?: string; parameters?: unknown; strict?: boolean }[];
  tool_choice?: unknown;
  parallel_tool_calls?: boolean | null;
  max_output_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  text?: {
    format?: { type: string; name?: string; schema?: unknown; strict?: boolean; description?: string };
  };
  reasoning?: { effort?: string | null } | null;
  metadata?: Record<string, string> | null;
  user?: string;
  stream?: boolean | null;
  store?: boolean | null;
  previous_response_id?: string | null;
  [key: string]: unknown;
}

export type ResponseInputItem = { type?: string; [key: string]: unknown };

const invalid = (message: string, param: string) => new AppError('invalid_request', message, { param });

/**
 * `lenient`: the request only ever reaches upstreams that take the client's own body (pass-through), so the
 * internal request serves the limits, budgets and guardrails only: what it cannot carry (built-in tools,
 * file inputs, item types Colloquy does not model) is left out of it instead of refused.
 */
export interface TranslateOptions {
  lenient?: boolean;
}

/** A message item's content as chat content: a string stays a string, parts become chat parts. */
function toContent(content: unknown, path: string, lenient = false): string | ContentPart[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) {
    if (lenient) return '';
    throw invalid('content must be a string or a list of parts', path);
  }
  return content.flatMap((part: { type?: string; [key: string]: unknown }, i): ContentPart[] => {
    try {
      return [contentPart(part, `${path}[${i}]`)];
    } catch (err) {
      if (lenient) return [];
      throw err;
    }
  });
}

function contentPart(part: { type?: string; [key: string]: unknown }, path: string): ContentPart {
  switch (part?.type) {
    case 'input_text':
    case 'output_text':
      return { type: 'text', text: String(part.text ?? '') };
    case 'refusal':
      return { type: 'text', text: String(part.refusal ?? '') };
    case 'input_image': {
      if (typeof part.image_url !== 'string')
        throw invalid('input_image needs an image_url (file_id is not supported)', `${path}.image_url`);
      return {
        type: 'image_url',
        image_url: { url: part.image_url, ...(typeof part.detail === 'string' && { detail: part.detail }) },
      };
    }
    default:
      throw invalid(`content part type \`${String(part?.type)}\` is not supported`, `${path}.type`);
  }
}

/** The stored or given input items as chat messages (instructions excluded). */
export function itemsToMessages(
  items: ResponseInputItem[],
  { lenient = false }: TranslateOptions = {},
): ChatMessage[] {
  const messages: ChatMessage[] = [];
  items.forEach((item, i) => {
    const path = `input[${i}]`;
    const type = item.type ?? (item.role ? 'message' : undefined);
    if (type === 'message') {
      const role = item.role as Role;
      if (!['user', 'assistant', 'system', 'developer'].includes(role)) {
        if (lenient) return;
        throw invalid(`role \`${String(item.role)}\` is not supported`, `${path}.role`);
      }
      messages.push({ role, content: toContent(item.content, `${path}.content`, lenient) });
    } else if (type === 'function_call') {
      if (typeof item.call_id !== 'string' || typeof item.name !== 'string')
        throw invalid('a function_call item needs call_id and name', path);
      const call = {
        id: item.call_id,
        type: 'function' as const,
        function: { name: item.name, arguments: typeof item.arguments === 'string' ? item.arguments : '{}' },
      };
      const last = messages.at(-1);
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (type === 'function_call_output') {
      if (typeof item.call_id !== 'string') throw invalid('a function_call_output item needs call_id', path);
      const output = item.output;
      messages.push({
        role: 'tool',
        tool_call_id: item.call_id,
        content: typeof output === 'string' ? output : toContent(output, `${path}.output`, lenient),
      });
    } else if (type === 'reasoning' || lenient) {
      // Nothing a chat-completions upstream can take back.
    } else {
      throw invalid(`input item type \`${String(item.type)}\` is not supported`, `${path}.type`);
    }
  });
  return messages;
}

/** The request's own input as items (a string is one user message). */
export function inputItems(input: ResponsesRequest['input']): ResponseInputItem[] {
  if (input === undefined) return [];
  return typeof input === 'string' ? [{ type: 'message', role: 'user', content: input }] : input;
}

/**
 * The internal request; `history` is the stored conversation before this turn (previous_response_id), its
 * items already in order (earlier inputs and outputs).
 */
export function toInternalRequest(
  body: ResponsesRequest,
  history: ResponseInputItem[] = [],
  { lenient = false }: TranslateOptions = {},
): ChatCompletionRequest {
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: 'system', content: body.instructions });
  const own = inputItems(body.input);
  messages.push(...itemsToMessages(history.length ? [...history, ...own] : own, { lenient }));
  if (messages.length === 0) {
    if (!lenient || own.length === 0) throw invalid('input must not be empty', 'input');
    messages.push({ role: 'user', content: '' });
  }
  const request: ChatCompletionRequest = { model: body.model, messages };
  if (body.stream) {
    request.stream = true;
    request.stream_options = { include_usage: true };
  }
  if (body.max_output_tokens != null) request.max_completion_tokens = body.max_output_tokens;
  if (body.temperature != null) request.temperature = body.temperature;
  if (body.top_p != null) request.top_p = body.top_p;
  if (body.user !== undefined) request.user = body.user;
  if (body.parallel_tool_calls != null) request.parallel_tool_calls = body.parallel_tool_calls;
  const tools = lenient ? body.tools?.filter((t) => t.type === 'function') : body.tools;
  if (tools?.length) {
    request.tools = tools.map((tool, i) => {
      if (tool.type !== 'function' || typeof tool.name !== 'string')
        throw invalid(
          `tool type \`${tool.type}\` is not supported (function tools only)`,
          `tools[${i}].type`,
        );
      return {
        type: 'function' as const,
        function: {
          name: tool.name,
          ...(tool.description !== undefined && { description: tool.description }),
          ...(tool.parameters !== undefined && { parameters: tool.parameters }),
          ...(tool.strict != null && { strict: tool.strict }),
        },
      };
    });
  }
  if (body.tool_choice !== undefined && !lenient) request.tool_choice = toToolChoice(body.tool_choice);
  const format = body.text?.format;
  if (format?.type === 'json_schema') {
    request.response_format = {
      type: 'json_schema',
      json_schema: {
        name: format.name ?? 'response',
        schema: format.schema,
        ...(format.strict != null && { strict: format.strict }),
        ...(format.description !== undefined && { description: format.description }),
      },
    };
  } else if (format?.type === 'json_object') request.response_format = { type: 'json_object' };
  if (body.reasoning?.effort) request.reasoning_effort = body.reasoning.effort;
  return request;
}

function toToolChoice(choice: unknown): unknown {
  if (typeof choice === 'string') return choice; // auto | none | required
  const c = choice as { type?: string; name?: string };
  if (c?.type === 'function' && typeof c.name === 'string')
    return { type: 'function', function: { name: c.name } };
  throw invalid('tool_choice must be auto, none, required or {type: "function", name}', 'tool_choice');
}
