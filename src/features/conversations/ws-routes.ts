import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';
import { CallController } from '../../core/call-signal.js';
import { AppError } from '../../core/errors.js';
import { toErrorResponse } from '../../plugins/error-handler.js';
import type { ProviderError } from '../../providers/errors.js';
import { type ConversationApi, callerOf } from './context-deps.js';
import { Content, ConversationParams } from './schemas.js';

/** The parts of a `ws` WebSocket used here. */
interface Socket {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer | string) => void): void;
  on(event: 'close', listener: () => void): void;
}
const OPEN = 1;

const ClientFrame = Type.Union([
  Type.Object(
    {
      type: Type.Literal('send'),
      content: Content,
      parent_id: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])),
      model: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    { type: Type.Literal('cancel'), generation_id: Type.String({ minLength: 1, maxLength: 64 }) },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('ping') }, { additionalProperties: false }),
]);
type ClientFrame = Static<typeof ClientFrame>;

/** Browsers cannot set headers on a WebSocket: `?token=` stands in for the Authorization header. */
async function tokenFromQuery(request: FastifyRequest) {
  const token = (request.query as { token?: unknown }).token;
  if (typeof token === 'string' && token && !request.headers.authorization) {
    request.headers.authorization = `Bearer ${token}`;
  }
}

/**
 * GET /api/conversations/:id/ws — the same conversation flow over a WebSocket. Client frames:
 * `{type:'send', content, parent_id?, model?, idempotency_key?}`, `{type:'cancel', generation_id}`,
 * `{type:'ping'}`. Server frames: each generation event as `{type, id, generation_id, data}` (types as
 * in SSE: message, start, delta, done, error), `{type:'rejected', error}` when a frame is refused, and
 * `{type:'pong'}`. Closing the socket does not stop a generation.
 */
export async function websocketRoutes(fastify: FastifyInstance, api: ConversationApi) {
  await fastify.register(websocket, { options: { maxPayload: 1024 * 1024 } });
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/api/conversations/:id/ws',
    {
      websocket: true,
      preValidation: tokenFromQuery,
      preHandler: [
        app.authenticate,
        async (request) => {
          await api.service.conversation(callerOf(request).userId, (request.params as { id: string }).id);
        },
      ],
      schema: {
        params: ConversationParams,
        querystring: Type.Object({ token: Type.Optional(Type.String({ maxLength: 4096 })) }),
      },
    },
    (rawSocket, request) => {
      const socket = rawSocket as unknown as Socket;
      const caller = callerOf(request);
      const conversationId = request.params.id;
      // Relays stop when the socket closes or the server shuts down. Not AbortSignal.any: with the server's
      // lifelong `closing` signal as a source, Node keeps every signal it made until shutdown.
      const closed = new CallController();
      const stop = closed.signal;
      const onShutdown = () => {
        closed.abort();
        socket.close(1001, 'server shutting down');
      };
      api.closing.addEventListener('abort', onShutdown, { once: true });
      socket.on('close', () => {
        closed.abort();
        api.closing.removeEventListener('abort', onShutdown);
      });

      const send = (frame: unknown) => {
        if (socket.readyState === OPEN) socket.send(JSON.stringify(frame));
      };
      const reject = (err: unknown, requestType?: string) => {
        if (!(err instanceof AppError) && !isProviderError(err)) {
          request.log.error({ err }, 'websocket request failed');
        }
        const { body } = toErrorResponse(err as ProviderError);
        send({ type: 'rejected', request_type: requestType ?? null, error: body.error });
      };

      // Sends run one after another (each streams its reply); cancel and ping are answered at once.
      let queue: Promise<void> = Promise.resolve();
      socket.on('message', (data) => {
        let frame: ClientFrame;
        try {
          const parsed = JSON.parse(data.toString()) as unknown;
          if (!Value.Check(ClientFrame, parsed)) {
            const first = [...Value.Errors(ClientFrame, parsed)][0];
            throw new AppError(
              'validation_error',
              `frame ${first?.instancePath ?? ''} ${first?.message ?? 'is invalid'}`,
            );
          }
          frame = parsed;
        } catch (err) {
          reject(
            err instanceof AppError ? err : new AppError('invalid_request', 'frames must be JSON objects'),
          );
          return;
        }
        if (frame.type === 'ping') send({ type: 'pong' });
        else if (frame.type === 'cancel')
          void cancel(frame.generation_id).catch((err) => reject(err, 'cancel'));
        else {
          const current = frame;
          queue = queue.then(() => sendMessage(current).catch((err) => reject(err, 'send')));
        }
      });

      async function sendMessage(frame: Extract<ClientFrame, { type: 'send' }>) {
        const started = await api.service.send(
          caller,
          conversationId,
          { content: frame.content, parentId: frame.parent_id, model: frame.model },
          frame.idempotency_key,
        );
        const generationId = started.ref.generation_id;
        for await (const event of api.feed.follow(generationId, 0, stop)) {
          send({ type: event.type, id: event.id, generation_id: generationId, data: event.data });
        }
      }

      async function cancel(generationId: string) {
        const row = await api.feed.findOwned(caller.userId, generationId);
        if (!row || row.conversation_id !== conversationId)
          throw new AppError('not_found', 'generation not found');
        // The generation's own error event (status partial) tells the client it stopped.
        if (!api.manager.cancel(generationId)) await api.redisLog?.requestCancel(generationId);
      }
    },
  );
}

function isProviderError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ProviderError';
}
