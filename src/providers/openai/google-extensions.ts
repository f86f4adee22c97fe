import type { ChatCompletionRequest, ChatMessage } from '../types.js';

/**
 * Gemini's thought signatures ride on tool calls as `extra_content.google.thought_signature` (the field
 * Google's OpenAI-compatible endpoint uses, https://ai.google.dev/gemini-api/docs/thought-signatures), and
 * clients send them back on the next turn. When that turn falls over to OpenAI or Azure, the field means
 * nothing there and strict OpenAI-format servers refuse an unknown property: it is left out, the call and its
 * id kept. Google's own OpenAI-compatible endpoint keeps it (see `servesGoogleExtensions`).
 *
 * The body is returned as it is when no message carries one (the common case costs a scan, no copy).
 */
export function withoutGoogleExtensions(body: ChatCompletionRequest): ChatCompletionRequest {
  if (!body.messages.some(hasExtension)) return body;
  return { ...body, messages: body.messages.map((m) => (hasExtension(m) ? strip(m) : m)) };
}

/** Whether an OpenAI-format base URL is Google's own (generativelanguage.googleapis.com/v1beta/openai). */
export const servesGoogleExtensions = (baseUrl: string) =>
  new URL(baseUrl).hostname === 'generativelanguage.googleapis.com';

function hasExtension(message: ChatMessage): boolean {
  if (message.extra_content !== undefined) return true;
  const calls = message.tool_calls;
  if (!calls) return false;
  for (const call of calls)
    if ((call as { extra_content?: unknown }).extra_content !== undefined) return true;
  return false;
}

function strip(message: ChatMessage): ChatMessage {
  const { extra_content: _message, ...rest } = message;
  if (!rest.tool_calls) return rest as ChatMessage;
  return {
    ...rest,
    tool_calls: rest.tool_calls.map((call) => {
      const { extra_content: _call, ...kept } = call as typeof call & { extra_content?: unknown };
      return kept;
    }),
  } as ChatMessage;
}
