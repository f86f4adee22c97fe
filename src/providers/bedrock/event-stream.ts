import { EventStreamCodec, getChunkedStream } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import { protocolError, timeoutError } from '../errors.js';
import { mapTransportError, type UpstreamResponse } from '../http.js';
import type { Timeouts } from '../types.js';
import { bedrockError } from './errors.js';
import type { ConverseStreamEvent } from './translate.js';

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/**
 * Reads an `application/vnd.amazon.eventstream` body (binary frames: a prelude of total and header lengths
 * with its CRC32, headers, payload, a message CRC32) into ConverseStream events, with AWS's own decoder:
 * frames split across or packed into network chunks, CRCs checked. Exceptions in the stream
 * (`:message-type: exception`, e.g. throttlingException, modelStreamErrorException) throw ProviderErrors.
 * Time to the first frame and the gap between frames are bounded like SSE streams (see readSse).
 */
export async function* readConverseStream(
  provider: string,
  body: UpstreamResponse['body'],
  options: { signal: AbortSignal; timeouts: Timeouts; startedAt: number },
): AsyncGenerator<ConverseStreamEvent> {
  let failed = false;
  const timed = withDeadlines(provider, body, options);
  try {
    for await (const frame of getChunkedStream(timed.chunks)) {
      let message: ReturnType<typeof codec.decode>;
      try {
        message = codec.decode(frame);
      } catch (err) {
        throw protocolError(provider, `a corrupt event stream frame (${(err as Error).message})`);
      }
      const header = (name: string) => {
        const value = message.headers[name]?.value;
        return typeof value === 'string' ? value : undefined;
      };
      const text = toUtf8(message.body);
      const messageType = header(':message-type');
      if (messageType === 'exception' || messageType === 'error') {
        let said = header(':error-message') ?? '';
        try {
          said = (JSON.parse(text) as { message?: string }).message ?? said;
        } catch {}
        const type = header(':exception-type') ?? header(':error-code') ?? 'InternalServerException';
        throw bedrockError(
          provider,
          type,
          `upstream ${provider} failed mid-stream (${type}): ${said}`,
          undefined,
        );
      }
      if (messageType !== 'event') continue;
      let parsed: Record<string, unknown>;
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        throw protocolError(provider, `malformed JSON in an event: ${text.slice(0, 100)}`);
      }
      yield { type: header(':event-type') ?? '', body: parsed };
    }
  } catch (err) {
    failed = true;
    const timeout = timed.failure();
    if (timeout) throw timeout;
    // The decoder's own complaints (a frame cut short by the end of the body, a bad length): not the network.
    if (!options.signal.aborted && /event message/i.test((err as Error)?.message ?? ''))
      throw protocolError(provider, (err as Error).message);
    throw mapTransportError(provider, err, options);
  } finally {
    timed.stop();
    if (failed || options.signal.aborted) body.destroy();
    else body.dump({ limit: 64 * 1024 }).catch(() => {});
  }
}

/**
 * The body's chunks with the first-token, idle and total deadlines: one timer re-armed before each wait, which
 * destroys the body when a deadline passes (the same policy as readSse).
 */
function withDeadlines(
  provider: string,
  body: UpstreamResponse['body'],
  options: { timeouts: Timeouts; startedAt: number },
) {
  const { timeouts, startedAt } = options;
  let timer: NodeJS.Timeout | undefined;
  let failure: ReturnType<typeof timeoutError> | undefined;
  let received = false;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    const iterator = body[Symbol.asyncIterator]();
    while (true) {
      const elapsed = Date.now() - startedAt;
      const totalLeft = timeouts.totalMs - elapsed;
      const wait = received ? timeouts.idleMs : timeouts.firstTokenMs - elapsed;
      const [what, limit] =
        totalLeft <= wait
          ? ['the whole call', timeouts.totalMs]
          : received
            ? ['gap between chunks', timeouts.idleMs]
            : ['time to first token', timeouts.firstTokenMs];
      clearTimeout(timer);
      timer = setTimeout(
        () => {
          failure = timeoutError(provider, what as string, limit as number);
          body.destroy(failure);
        },
        Math.max(1, Math.min(wait, totalLeft)),
      );
      const next = await iterator.next();
      clearTimeout(timer);
      if (next.done) return;
      received = true;
      yield next.value;
    }
  }
  return { chunks: chunks(), failure: () => failure, stop: () => clearTimeout(timer) };
}
