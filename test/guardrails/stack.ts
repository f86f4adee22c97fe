import { after, before } from 'node:test';
import type { RoutingFile } from '../../src/config/routing-file.js';
import { bearer } from '../helpers/app.js';
import {
  type ChatStack,
  type ChatStackOptions,
  defaultRouting,
  startChatStack,
} from '../helpers/chat-stack.js';

/**
 * The setup the guardrail suites share: a chat stack with the default routing plus their guardrails, started
 * in the describe block's `before` and closed in its `after`, and a POST helper with the stack user's key.
 */

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
export type Json = Record<string, any>;

type GuardrailEntry = NonNullable<RoutingFile['guardrails']>[number];
type ModelEntry = NonNullable<RoutingFile['models']>[number];

/** The output guardrail the no-bypass suites try to get past. */
export const HOUSE_RULES: GuardrailEntry = {
  name: 'house-rules',
  check: 'regex',
  deny: ['(?i)forbidden phrase'],
  stage: 'output',
  action: 'block',
};

/** The stack once its `before` has run, and `post` (JSON, the user's key, `headers` added to every call). */
export interface GuardedStack extends ChatStack {
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
}

/** Call at the top of a describe block: the stack is there for its tests (never read it outside a test). */
export function guardedStack(options: {
  guardrails: GuardrailEntry[];
  /** Models added to the default routing's. */
  models?: ModelEntry[];
  fakeOptions?: ChatStackOptions['fakeOptions'];
  env?: Record<string, string>;
  /** Sent with every `post`. */
  headers?: Record<string, string>;
}): GuardedStack {
  let started: ChatStack | undefined;
  before(async () => {
    started = await startChatStack({
      ...(options.fakeOptions ? { fakeOptions: options.fakeOptions } : {}),
      ...(options.env ? { env: options.env } : {}),
      routing: (backup) => {
        const routing = defaultRouting(backup);
        return {
          ...routing,
          ...(options.models ? { models: [...(routing.models ?? []), ...options.models] } : {}),
          guardrails: options.guardrails,
        };
      },
    });
  });
  after(async () => {
    await started?.close();
  });
  const s = () => {
    if (!started) throw new Error('the stack is read before its before() hook ran');
    return started;
  };
  const stack = {
    post: (path, body, headers = {}) =>
      fetch(`${s().url}${path}`, {
        method: 'POST',
        headers: {
          ...bearer(s().apiKey),
          'content-type': 'application/json',
          ...options.headers,
          ...headers,
        },
        body: JSON.stringify(body),
      }),
  } as GuardedStack;
  // Each of the stack's fields reads the one started for this block (its functions are closures, not methods).
  const fields: (keyof ChatStack)[] = [
    't',
    'url',
    'fake',
    'backup',
    'apiKey',
    'apiKeyId',
    'userId',
    'usageRow',
    'close',
  ];
  for (const name of fields) Object.defineProperty(stack, name, { get: () => s()[name], enumerable: true });
  return stack;
}

/**
 * The moderation-by-a-chat-model suites: the alias `moderator` served by the second fake upstream (so what the
 * classifier is asked and answers are in the test's hand; the answer to the user comes from the first), and
 * the input guardrail `chat-mod` asking it, with `extra` (thresholds…) added.
 */
export function moderationStack(extra: Partial<GuardrailEntry> = {}, env?: Record<string, string>) {
  return guardedStack({
    models: [{ name: 'moderator', deployments: [{ provider: 'backup', model: 'gpt-4o-mini' }] }],
    guardrails: [
      {
        name: 'chat-mod',
        check: 'moderation',
        model: 'moderator',
        stage: 'input',
        action: 'block',
        timeout_ms: 5_000,
        ...extra,
      } as GuardrailEntry,
    ],
    ...(env ? { env } : {}),
    headers: { 'anthropic-version': '2023-06-01' },
  });
}
