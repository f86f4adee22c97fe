import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';
import { CallController } from '../../core/call-signal.js';
import { AppError } from '../../core/errors.js';
import { JsonShapeError, parseBoundedJson } from '../../core/json-shape.js';
import { normalizeText } from '../../core/text-normalize.js';
import { principalOf } from '../../plugins/auth.js';
import { toErrorResponse } from '../../plugins/error-handler.js';
import type { ProviderError } from '../../providers/errors.js';
import { type ConversationApi, callerOf, countStream } from './context-deps.js';
import { ConversationParams, replyOptions, SendMessageBody } from './schemas.js';

/** The parts of a `ws` WebSocket used here. */
interface Socket {
  readonly readyState: number;
  /** Bytes sent but not yet handed to the kernel (the client reads slower than frames are sent). */
  readonly bufferedAmount: number;
  /** `written` runs once the frame left this process's buffers (with an error when the socket died first). */
  send(data: string, written?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer | string) => void): void;
  on(event: 'close', listener: () => void): void;
}
const OPEN = 1;
/** The close code of a socket whose credential stopped being valid (4000-4999 are the application's; 401). */
export const CREDENTIALS_CLOSE_CODE = 4401;
/**
 * Backpressure, as the SSE paths wait for 'drain': past this many buffered bytes the relay stops taking the
 * generation's events until the client has read what was sent. The generation itself is durable and goes on.
 */
export const WS_HIGH_WATER_BYTES = 1024 * 1024;
/**
 * A client that keeps sending frames (pings, refused frames) without reading the answers could still grow
 * the buffer: past this it is closed with SLOW_CLIENT_CLOSE_CODE (4000 + HTTP 408); it may re-join the
 * generation from its last event id.
 */
export const WS_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
export const SLOW_CLIENT_CLOSE_CODE = 4408;

/**
 * A `send` frame takes the fields of the HTTP send's body (POST /api/conversations/:id/messages: content,
 * attachments, parent_id, model and the reply settings), checked by the same schema so both stay alike, less
 * `stream` (a socket always streams), plus the Idempotency-Key header a frame cannot carry.
 */
const { stream: _httpOnly, ...sendFields } = SendMessageBody.properties;
const SendFrame = Type.Object(
  {
    type: Type.Literal('send'),
    ...sendFields,
    idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  },
  { additionalProperties: false },
);
const CancelFrame = Type.Object(
  { type: Type.Literal('cancel'), generation_id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);
const PingFrame = Type.Object({ type: Type.Literal('ping') }, { additionalProperties: false });
/** Each frame type's schema: a frame is checked against its own type's, so an error names the field at fault. */
const FRAMES = { send: SendFrame, cancel: CancelFrame, ping: PingFrame } as const;
type ClientFrame = Static<typeof SendFrame> | Static<typeof CancelFrame> | Static<typeof PingFrame>;

/** A client frame, or an AppError (validation_error, with the field at fault as `param`) saying what is wrong. */
export function parseClientFrame(data: string): ClientFrame {
  let parsed: unknown;
  try {
    // Bounded like a request body (core/json-shape.ts): a frame is client JSON too.
    parsed = parseBoundedJson(data);
  } catch (err) {
    if (err instanceof JsonShapeError) throw new AppError('invalid_request', err.message);
    throw new AppError('validation_error', 'a frame must be a JSON object');
  }
  // The same text normalisation as every /api body (NUL refused, lone surrogates replaced).
  parsed = normalizeText(parsed, 'frame');
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new AppError('validation_error', 'a frame must be a JSON object');
  }
  const type = (parsed as { type?: unknown }).type;
  const schema = typeof type === 'string' ? FRAMES[type as keyof typeof FRAMES] : undefined;
  if (!schema || !Object.hasOwn(FRAMES, type as string)) {
    throw new AppError(
      'validation_error',
      `unknown frame type ${JSON.stringify(type ?? null)}: expected "send", "cancel" or "ping"`,
      { param: 'type' },
    );
  }
  if (!Value.Check(schema, parsed)) {
    const first = [...Value.Errors(schema, parsed)][0];
    const field = first?.instancePath.replace(/^\//, '').replaceAll('/', '.') || undefined;
    const extra = (first?.params as { additionalProperties?: string[] } | undefined)?.additionalProperties;
    const param = field ?? extra?.[0];
    throw new AppError(
      'validation_error',
      `${type} frame: ${param ? `\`${param}\` ` : ''}${first?.message ?? 'is invalid'}`,
      param ? { param } : {},
    );
  }
  return parsed as ClientFrame;
}

/** Browsers cannot set headers on a WebSocket: `?token=` stands in for the Authorization header. */
async function tokenFromQuery(request: FastifyRequest) {
  const token = (request.query as { token?: unknown }).token;
  if (typeof token === 'string' && token && !request.headers.authorization) {
    request.headers.authorization = `Bearer ${token}`;
  }
}

/**
 * GET /api/conversations/:id/ws — the same conversation flow over a WebSocket. Client frames:
 * `{type:'send', content, attachments?, parent_id?, model?, temperature?, max_tokens?, system_prompt?,
 * idempotency_key?}` (the HTTP send's body), `{type:'cancel', generation_id}`,
 * `{type:'ping'}`. Server frames: each generation event as `{type, id, generation_id, data}` (types as
 * in SSE: message, start, delta, done, error), `{type:'rejected', request_type, error, retry_after?}` when
 * a frame is refused, `{type:'pong'}`, and `{type:'closed', error}` before the socket closes with 4401 when
 * its credential stops being valid (checked on every frame, and watched). A client that stops reading is
 * waited for (see WS_HIGH_WATER_BYTES); one that keeps sending without reading is closed with 4408. Closing
 * the socket does not stop a generation. The protocol for clients: docs/conversations.md.
 */
export async function websocketRoutes(fastify: FastifyInstance, api: ConversationApi) {
  await fastify.register(websocket, {
    options: { maxPayload: 1024 * 1024 },
    // The plugin's own preClose would close every socket (without a code) the moment close() begins; they
    // get the drain period instead, and 1001 when it ends (`api.closing`, routes.ts).
    preClose: (done) => done(),
  });
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/api/conversations/:id/ws',
    {
      websocket: true,
      // Before authentication, which runs at onRequest (see plugins/auth.ts).
      onRequest: tokenFromQuery,
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
      const uncount = countStream(api, 'conversations_ws');
      socket.on('close', () => {
        uncount();
        closed.abort();
        api.closing.removeEventListener('abort', onShutdown);
      });
      // Upgraded on a connection still open after the drain ended: nothing would close it otherwise.
      if (api.closing.aborted) onShutdown();

      // Backpressure. `ws` buffers whatever is sent while the kernel's buffers are full (a client that does
      // not read): the relay waits for its last frame's hand-over to the kernel before taking the next event
      // from the generation's log, once the buffer is past WS_HIGH_WATER_BYTES. A write's callback fires
      // once, in order, even when the socket dies, so the wait ends; it is a wait for an event, never a busy
      // loop: what stays buffered after our last frame left is ws's own (a close, at most 60 pongs: ws ends a
      // client owed more), not ours to wait for.
      let lastWritten: Promise<void> = Promise.resolve();
      let unwritten = 0;
      const send = (frame: unknown) => {
        if (socket.readyState !== OPEN) return;
        const data = JSON.stringify(frame);
        // Only a client already behind (the relay has stopped for it) that keeps asking for answers gets
        // here: the relay itself sends only at or below the high-water mark, whatever a frame's size.
        const buffered = socket.bufferedAmount;
        if (buffered > WS_HIGH_WATER_BYTES && buffered + Buffer.byteLength(data) > WS_MAX_BUFFERED_BYTES) {
          request.log.warn({ bufferedBytes: buffered }, 'websocket client not reading: closed with 4408');
          closed.abort();
          socket.close(SLOW_CLIENT_CLOSE_CODE, 'client_too_slow');
          return;
        }
        unwritten++;
        lastWritten = new Promise((resolve) =>
          socket.send(data, () => {
            unwritten--;
            resolve();
          }),
        );
      };
      const stopped = new Promise<void>((resolve) => {
        if (stop.aborted) resolve();
        else stop.addEventListener('abort', () => resolve(), { once: true });
      });
      /**
       * Resolves once the client has taken what was sent (or the socket is gone): the relay may go on. Each
       * turn waits for a write still pending (`unwritten` > 0: the last one's callback has not run, as they
       * run in order), so it cannot spin.
       */
      const writable = async () => {
        while (
          socket.readyState === OPEN &&
          !stop.aborted &&
          socket.bufferedAmount > WS_HIGH_WATER_BYTES &&
          unwritten > 0
        ) {
          await Promise.race([lastWritten, stopped]);
        }
      };
      const reject = (err: unknown, requestType?: string) => {
        if (!(err instanceof AppError) && !isProviderError(err)) {
          request.log.error({ err }, 'websocket request failed');
        }
        const { body, headers } = toErrorResponse(err as ProviderError);
        // A frame has no headers: a refusal's Retry-After travels as `retry_after` (seconds).
        const retryAfter = headers['retry-after'] ? Number(headers['retry-after']) : undefined;
        send({
          type: 'rejected',
          request_type: requestType ?? null,
          error: body.error,
          ...(retryAfter ? { retry_after: retryAfter } : {}),
        });
      };

      // The credential is checked again on every frame (it may have been revoked, its user disabled, or it
      // expired since the upgrade), and the socket closes as soon as the credential stops being valid.
      let ended = false;
      const endForCredentials = (err: unknown) => {
        if (ended) return;
        ended = true;
        const { body } = toErrorResponse(err as ProviderError);
        send({ type: 'closed', error: body.error });
        closed.abort();
        socket.close(CREDENTIALS_CLOSE_CODE, body.error.code);
      };
      const unwatch = api.credentials?.watch(principalOf(request), endForCredentials, { expiry: true });
      socket.on('close', () => unwatch?.());
      let checked: Promise<void> = Promise.resolve();
      socket.on('message', (data) => {
        checked = checked.then(async () => {
          if (ended) return;
          try {
            await fastify.authenticate(request);
          } catch (err) {
            endForCredentials(err);
            return;
          }
          handle(data);
        });
      });

      // Sends run one after another (each streams its reply); cancel and ping are answered at once.
      let queue: Promise<void> = Promise.resolve();
      function handle(data: Buffer | string) {
        let frame: ClientFrame;
        try {
          frame = parseClientFrame(data.toString());
        } catch (err) {
          const type = frameType(data);
          reject(err, type);
          return;
        }
        if (frame.type === 'ping') send({ type: 'pong' });
        else if (frame.type === 'cancel')
          void cancel(frame.generation_id).catch((err) => reject(err, 'cancel'));
        else {
          const current = frame;
          queue = queue.then(() => sendMessage(current).catch((err) => reject(err, 'send')));
        }
      }

      async function sendMessage(frame: Extract<ClientFrame, { type: 'send' }>) {
        const started = await api.service.send(
          caller,
          conversationId,
          {
            content: frame.content,
            parentId: frame.parent_id,
            model: frame.model,
            attachments: frame.attachments,
            options: replyOptions(frame),
          },
          frame.idempotency_key,
        );
        const generationId = started.ref.generation_id;
        for await (const event of api.feed.follow(generationId, 0, stop)) {
          // Past the high-water mark, the next event is taken from the log only once the client reads: the
          // generation runs on without it (its events are kept), and the client gets them, in order, later.
          await writable();
          send({ type: event.type, id: event.id, generation_id: generationId, data: event.data });
        }
      }

      async function cancel(generationId: string) {
        const row = await api.feed.findOwned(caller.userId, generationId);
        if (!row || row.conversation_id !== conversationId)
          throw new AppError('not_found', 'generation not found');
        // The generation's own error event (status partial) tells the client it stopped.
        if (api.manager.cancel(generationId)) return;
        // Run elsewhere: its replica is asked on its own channel, or, gone, the generation is finished here.
        const asked = await api.cancelElsewhere?.(generationId);
        if (asked === 'unknown' || asked === undefined) await api.redisLog?.requestCancel(generationId);
      }
    },
  );
}

/** The `type` a refused frame named, when it is a short string: the rejection echoes it as `request_type`. */
function frameType(data: Buffer | string): string | undefined {
  try {
    const type = (JSON.parse(data.toString()) as { type?: unknown } | null)?.type;
    return typeof type === 'string' && type.length <= 64 ? type : undefined;
  } catch {
    return undefined;
  }
}

function isProviderError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ProviderError';
}
