/**
 * The upstream's own bytes of a non-streaming OpenAI-format answer, kept beside the parsed completion (issue
 * 26's pass-through): when the client speaks the upstream's protocol and nothing transformed the answer, the
 * /v1 route sends these bytes instead of serializing the parsed object again (~12 µs and its allocations on a
 * short completion). Keyed by the completion object itself: any copy (a guardrail's redaction, a quirk's
 * restore, the router's spread) is a new object and has no raw body, so a transformed answer can never be
 * sent as the untransformed bytes. An in-place change must call `forgetRawBody`.
 */
const rawBodies = new WeakMap<object, string>();

export function keepRawBody(completion: object, text: string): void {
  rawBodies.set(completion, text);
}

export function rawBodyOf(completion: object): string | undefined {
  return rawBodies.get(completion);
}

export function forgetRawBody(completion: object): void {
  rawBodies.delete(completion);
}
