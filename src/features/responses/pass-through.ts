/**
 * The Responses API passed through to an upstream that serves it itself (an `openai` provider; issue 20):
 * the client's body, only `model` replaced, so built-in tools, reasoning items, `include`, `truncation`…
 * survive. `previous_response_id` is Colloquy's own (its store, whichever deployment served the earlier
 * turn), so it is resolved here: the stored turns go upstream as input items before this turn's. Pure.
 */
import type { ResponseObject } from './from-internal.js';
import { inputItems, type ResponseInputItem, type ResponsesRequest } from './to-internal.js';

/** The body an OpenAI upstream receives (its `model` is set by the provider). */
export function nativeBody(body: ResponsesRequest, history: ResponseInputItem[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body };
  if (body.previous_response_id) {
    delete out.previous_response_id;
    // Earlier output items go back as input; their ids are Colloquy's or another upstream's, which this
    // upstream would look up (and not find): the items carry their content, so the ids are left out.
    // Reasoning items keep theirs: OpenAI needs it (with encrypted_content) to take them back.
    out.input = [
      ...history.map((item) => {
        if (item.type === 'reasoning' || !('id' in item)) return item;
        const { id: _id, ...rest } = item;
        return rest;
      }),
      ...inputItems(body.input),
    ];
  }
  return out;
}

/** The upstream's response as the client sees and Colloquy stores it: it continues the client's chain. */
export function asStored(native: ResponseObject, body: ResponsesRequest): ResponseObject {
  return body.previous_response_id ? { ...native, previous_response_id: body.previous_response_id } : native;
}

/** The response object a native stream's final event carries (completed, incomplete or failed). */
export function finalResponse(event: string, data: string): ResponseObject | undefined {
  if (event !== 'response.completed' && event !== 'response.incomplete' && event !== 'response.failed')
    return undefined;
  try {
    return (JSON.parse(data) as { response?: ResponseObject }).response;
  } catch {
    return undefined;
  }
}
