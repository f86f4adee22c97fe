import { ProviderError } from '../errors.js';
import type { ChatCompletionRequest, ChatMessage, ContentPart, ToolCall } from '../types.js';
import { cleanSchema } from './schema.js';
import type { GeminiContent, GeminiPart, GeminiRequest } from './wire.js';

/**
 * The internal (OpenAI chat-completions) request as a Gemini `generateContent` body
 * (https://ai.google.dev/api/generate-content#request-body).
 *
 * Thought signatures (https://ai.google.dev/gemini-api/docs/thought-signatures) travel on the internal format
 * the way Google's own OpenAI-compatible endpoint carries them: `extra_content.google.thought_signature` on a
 * tool call (and on an assistant message for a signed text part). They go back in the same part they came in.
 * A tool call from another provider (a fallback) has none: Gemini 3 refuses the first call of a step without
 * one, so it gets the documented placeholder that skips the validation.
 */
export const SKIP_SIGNATURE = 'skip_thought_signature_validator';

export interface GoogleExtension {
  extra_content?: { google?: { thought_signature?: string } };
}

export const signatureOf = (value: unknown): string | undefined => {
  const sig = (value as GoogleExtension | undefined)?.extra_content?.google?.thought_signature;
  return typeof sig === 'string' && sig ? sig : undefined;
};

export function toGeminiRequest(body: ChatCompletionRequest, provider: string): GeminiRequest {
  const system: GeminiPart[] = [];
  const contents: GeminiContent[] = [];
  // Gemini matches a functionResponse to its call by name (and order): the names come from the calls.
  const callNames = new Map<string, string>();
  const push = (role: 'user' | 'model', parts: GeminiPart[]) => {
    if (!parts.length) return;
    const last = contents.at(-1);
    // Consecutive turns of one role (parallel tool results, a tool result then a user note) are one content.
    if (last?.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  };
  for (const message of body.messages) {
    switch (message.role) {
      case 'system':
      case 'developer':
        system.push(...contentParts(message.content, provider).filter((p) => p.text !== undefined));
        break;
      case 'user':
        push('user', contentParts(message.content, provider));
        break;
      case 'assistant':
        push('model', assistantParts(message, callNames));
        break;
      case 'tool': {
        const name = callNames.get(message.tool_call_id ?? '') ?? message.name;
        if (!name)
          throw invalid(provider, 'a tool message answers no tool call of an earlier assistant message');
        push('user', [{ functionResponse: { name, response: toolResponse(message.content) } }]);
        break;
      }
    }
  }
  const request: GeminiRequest = { contents };
  if (system.length) request.systemInstruction = { parts: system };
  if (body.tools?.length) {
    request.tools = [
      {
        functionDeclarations: body.tools.map((t) => ({
          name: t.function.name,
          ...(t.function.description ? { description: t.function.description } : {}),
          ...(t.function.parameters && hasProperties(t.function.parameters)
            ? { parameters: cleanSchema(t.function.parameters) }
            : {}),
        })),
      },
    ];
  }
  const toolConfig = toToolConfig(body.tool_choice);
  if (toolConfig && body.tools?.length) request.toolConfig = toolConfig;
  const generationConfig = toGenerationConfig(body);
  if (Object.keys(generationConfig).length) request.generationConfig = generationConfig;
  // Gemini-only fields a client may send through (safety settings, a cached context).
  if (Array.isArray(body.safety_settings)) request.safetySettings = body.safety_settings;
  if (typeof body.cached_content === 'string') request.cachedContent = body.cached_content;
  return request;
}

function assistantParts(message: ChatMessage, callNames: Map<string, string>): GeminiPart[] {
  const parts: GeminiPart[] = [];
  const text = textOf(message.content);
  if (text) {
    const signature = signatureOf(message);
    parts.push(signature ? { text, thoughtSignature: signature } : { text });
  }
  (message.tool_calls ?? []).forEach((call: ToolCall, i) => {
    callNames.set(call.id, call.function.name);
    const signature = signatureOf(call) ?? (i === 0 ? SKIP_SIGNATURE : undefined);
    parts.push({
      functionCall: { name: call.function.name, args: parseArgs(call.function.arguments) },
      ...(signature ? { thoughtSignature: signature } : {}),
    });
  });
  return parts;
}

function parseArgs(args: string): Record<string, unknown> {
  if (!args) return {};
  try {
    const parsed = JSON.parse(args);
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : { value: parsed };
  } catch {
    // A model's malformed arguments still have to go back as it wrote them.
    return { arguments: args };
  }
}

/** A tool result: Gemini wants an object; JSON objects go as they are, anything else as `{ result }`. */
function toolResponse(content: ChatMessage['content']): Record<string, unknown> {
  const text = textOf(content) ?? '';
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed;
  } catch {
    // plain text
  }
  return { result: text };
}

const textOf = (content: ChatMessage['content']): string | undefined =>
  typeof content === 'string'
    ? content
    : Array.isArray(content)
      ? content
          .filter((p) => p.type === 'text' && typeof p.text === 'string')
          .map((p) => p.text)
          .join('')
      : undefined;

function contentParts(content: ChatMessage['content'], provider: string): GeminiPart[] {
  if (typeof content === 'string') return content ? [{ text: content }] : [];
  if (!Array.isArray(content)) return [];
  return content.flatMap((part) => contentPart(part, provider));
}

function contentPart(part: ContentPart, provider: string): GeminiPart[] {
  switch (part.type) {
    case 'text':
      return typeof part.text === 'string' && part.text ? [{ text: part.text }] : [];
    case 'image_url':
      return [mediaPart(part.image_url?.url ?? '', 'image/jpeg', provider)];
    case 'input_audio': {
      const audio = part.input_audio as { data?: string; format?: string } | undefined;
      if (!audio?.data) throw invalid(provider, 'input_audio without data');
      return [{ inlineData: { mimeType: `audio/${audio.format ?? 'wav'}`, data: audio.data } }];
    }
    case 'file': {
      const file = part.file as { file_data?: string } | undefined;
      if (!file?.file_data) throw invalid(provider, 'a file part needs file_data (a data: URL) for Gemini');
      return [mediaPart(file.file_data, 'application/pdf', provider)];
    }
    default:
      throw invalid(provider, `content parts of type ${part.type} are not supported by Gemini`);
  }
}

/** A data: URL becomes inlineData; any other URL (gs://, https://) fileData. */
function mediaPart(url: string, fallbackType: string, provider: string): GeminiPart {
  const data = /^data:([^;,]+)?(;base64)?,(.*)$/s.exec(url);
  if (data) {
    if (!data[2]) throw invalid(provider, 'data: URLs must be base64-encoded');
    return { inlineData: { mimeType: data[1] ?? fallbackType, data: data[3]! } };
  }
  if (!/^(https?|gs):\/\//.test(url))
    throw invalid(provider, 'an image URL must be a data:, https: or gs: URL');
  return { fileData: { mimeType: mimeFromUrl(url) ?? fallbackType, fileUri: url } };
}

const MIME_BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  heic: 'image/heic',
  pdf: 'application/pdf',
};
const mimeFromUrl = (url: string) =>
  MIME_BY_EXTENSION[/\.([a-z0-9]+)(?:[?#].*)?$/i.exec(url)?.[1]?.toLowerCase() ?? ''];

const hasProperties = (schema: unknown) =>
  !(schema && typeof schema === 'object' && Object.keys(schema).length === 0);

function toToolConfig(choice: unknown): GeminiRequest['toolConfig'] {
  if (choice === 'auto') return { functionCallingConfig: { mode: 'AUTO' } };
  if (choice === 'none') return { functionCallingConfig: { mode: 'NONE' } };
  if (choice === 'required') return { functionCallingConfig: { mode: 'ANY' } };
  const name = (choice as { function?: { name?: unknown } } | null)?.function?.name;
  if (typeof name === 'string')
    return { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [name] } };
  return undefined;
}

function toGenerationConfig(body: ChatCompletionRequest): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const set = (key: string, value: unknown) => {
    if (value !== undefined && value !== null) config[key] = value;
  };
  set('temperature', body.temperature);
  set('topP', body.top_p);
  set('topK', body.top_k);
  set('maxOutputTokens', body.max_completion_tokens ?? body.max_tokens);
  if (body.stop != null) set('stopSequences', Array.isArray(body.stop) ? body.stop : [body.stop]);
  set('candidateCount', body.n);
  set('seed', body.seed);
  set('presencePenalty', body.presence_penalty);
  set('frequencyPenalty', body.frequency_penalty);
  const thinking = toThinkingConfig(body.model, body.reasoning_effort);
  if (thinking) config.thinkingConfig = thinking;
  const format = body.response_format as
    | { type?: string; json_schema?: { schema?: unknown } }
    | null
    | undefined;
  if (format?.type === 'json_object') config.responseMimeType = 'application/json';
  if (format?.type === 'json_schema') {
    config.responseMimeType = 'application/json';
    if (format.json_schema?.schema) config.responseSchema = cleanSchema(format.json_schema.schema);
  }
  return config;
}

/**
 * OpenAI's `reasoning_effort` as Gemini's thinking (https://ai.google.dev/gemini-api/docs/thinking): Gemini 3
 * takes a `thinkingLevel`, Gemini 2.5 a `thinkingBudget` in tokens (0 turns thinking off where the model allows).
 */
function toThinkingConfig(model: string, effort: unknown): Record<string, unknown> | undefined {
  if (typeof effort !== 'string') return undefined;
  if (/^gemini-3/.test(model)) {
    const level = effort === 'none' || effort === 'minimal' ? 'low' : effort === 'medium' ? 'high' : effort;
    return level === 'low' || level === 'high' ? { thinkingLevel: level } : undefined;
  }
  const budget: Record<string, number> = { none: 0, minimal: 512, low: 1024, medium: 8192, high: 24576 };
  return effort in budget ? { thinkingBudget: budget[effort] } : undefined;
}

const invalid = (provider: string, message: string) =>
  new ProviderError(message, {
    provider,
    status: 400,
    code: 'invalid_request',
    type: 'invalid_request_error',
    param: 'messages',
    retryable: false,
  });
