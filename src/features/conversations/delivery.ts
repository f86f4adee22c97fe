import type { FastifyReply, FastifyRequest } from 'fastify';
import { CallController } from '../../core/call-signal.js';
import { type ConversationApi, closeOnRevocation, countStream } from './context-deps.js';
import type { StartedGeneration } from './service.js';
import { openEventStream } from './sse.js';
import { toPublicMessage } from './store.js';

/**
 * Answers a request that started (or replayed) a generation: server-sent events from its first event,
 * or (stream: false) JSON once it has finished. Either way the generation runs on if the client leaves.
 */
export async function deliverGeneration(
  api: ConversationApi,
  request: FastifyRequest,
  reply: FastifyReply,
  started: StartedGeneration,
  stream: boolean,
) {
  const { ref } = started;
  const headers: Record<string, string> = { 'x-generation-id': ref.generation_id };
  if (started.replayed) headers['idempotent-replayed'] = 'true';

  if (stream) {
    const events = openEventStream(reply, headers, api.closing);
    const uncount = countStream(api, 'conversations_sse');
    const unwatch = closeOnRevocation(api, request, events);
    try {
      for await (const event of api.feed.follow(ref.generation_id, 0, events.signal))
        await events.send(event);
    } catch (err) {
      request.log.error({ err, generationId: ref.generation_id }, 'generation event stream failed');
    } finally {
      unwatch();
      uncount();
      events.end();
    }
    return reply;
  }

  // Stop waiting (the generation carries on) when the client goes away (the response closes early) or the
  // server shuts down. Not AbortSignal.any: with the server's lifelong `closing` signal as a source, Node 20
  // keeps every signal it made until shutdown (~300 B retained per turn, measured).
  const controller = new CallController();
  const stopWaiting = () => controller.abort();
  reply.raw.once('close', stopWaiting);
  if (api.closing.aborted) stopWaiting();
  else api.closing.addEventListener('abort', stopWaiting, { once: true });
  const signal = controller.signal;
  const live = api.manager.get(ref.generation_id);
  let usage: unknown = null;
  try {
    if (live) {
      const outcome = await Promise.race([live.finished, abortPromise(signal)]);
      // Nothing was generated and the provider said why: answer with its error (the user message is stored).
      if (outcome?.providerErrorBeforeStart) throw outcome.providerErrorBeforeStart;
      usage = outcome?.usage ?? null;
    } else {
      const final = await api.feed.final(ref.generation_id, signal);
      usage = final?.data.usage ?? null;
    }
  } finally {
    api.closing.removeEventListener('abort', stopWaiting);
  }
  const ids = [ref.user_message_id, ref.message_id].filter((id): id is string => id !== null);
  const rows = new Map((await api.store.messagesByIds(ids)).map((row) => [row.id, row]));
  const message = rows.get(ref.message_id);
  const userMessage = ref.user_message_id ? rows.get(ref.user_message_id) : undefined;
  reply.code(201).headers(headers);
  return {
    generation_id: ref.generation_id,
    status: !message || message.status === 'streaming' ? 'running' : message.status,
    user_message: userMessage ? toPublicMessage(userMessage) : null,
    message: message ? toPublicMessage(message) : null,
    usage,
  };
}

function abortPromise(signal: AbortSignal): Promise<undefined> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(undefined);
    else signal.addEventListener('abort', () => resolve(undefined), { once: true });
  });
}
