import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeCheckServer {
  url: string;
  /** Every request body received, and whether its signature verified (webhook). */
  received: { body: Record<string, unknown>; signed: boolean }[];
  /** Requests whose client went away before the answer (a guardrail's timeout aborting its call). */
  aborted: number;
  close(): Promise<void>;
}

async function serve(
  handle: (
    body: Record<string, unknown>,
    req: http.IncomingMessage,
    raw: string,
  ) => Promise<{ status: number; body: unknown }>,
): Promise<FakeCheckServer & { server: http.Server }> {
  const state = { received: [] as FakeCheckServer['received'], aborted: 0 };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) {
        gone = true;
        state.aborted++;
      }
    });
    const answer = await handle(JSON.parse(raw) as Record<string, unknown>, req, raw);
    if (gone) return;
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const out = {
    server,
    url: `http://127.0.0.1:${port}`,
    get received() {
      return state.received;
    },
    get aborted() {
      return state.aborted;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return out;
}

/** Waits `ms`, or less if the client goes away first. */
const pause = (req: http.IncomingMessage, ms: number) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    req.socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * An OpenAI-compatible moderation endpoint, from OpenAI's API reference ("Moderations", POST /v1/moderations):
 * request `{model, input}`; response `{id, model, results: [{flagged, categories: {harassment: bool, …},
 * category_scores: {harassment: number, …}}]}`. Text containing "hate-test" scores 0.97 on `hate`; text
 * containing "mod-slow" is answered after 30 s (a hung moderation service).
 */
export async function startFakeModeration(): Promise<FakeCheckServer> {
  const categories = ['harassment', 'hate', 'self-harm', 'sexual', 'sexual/minors', 'violence'];
  const s = await serve(async (body, req) => {
    const input = String(body.input ?? '');
    if (req.url !== '/v1/moderations') return { status: 404, body: { error: { message: 'not found' } } };
    s.received.push({ body, signed: false });
    if (input.includes('mod-slow')) await pause(req, 30_000);
    const scores = Object.fromEntries(
      categories.map((c) => [c, c === 'hate' && input.includes('hate-test') ? 0.97 : 0.01]),
    );
    return {
      status: 200,
      body: {
        id: 'modr-1',
        model: String(body.model ?? 'omni-moderation-latest'),
        results: [
          {
            flagged: scores.hate! > 0.5,
            categories: Object.fromEntries(categories.map((c) => [c, scores[c]! > 0.5])),
            category_scores: scores,
          },
        ],
      },
    };
  });
  return s;
}

/**
 * An operator's guardrail webhook: it verifies Colloquy's signature (HMAC-SHA256 of "<timestamp>.<body>" with
 * the shared secret, as documented in README "Guardrails") and refuses unsigned or forged calls with 401.
 * Decides by the text: "webhook-block" → block, "rewrite-me" → rewrite it, "slowly" → answers after 30 s.
 */
export async function startFakeWebhook(secret: string): Promise<FakeCheckServer> {
  const s = await serve(async (body, req, raw) => {
    const timestamp = String(req.headers['x-colloquy-timestamp'] ?? '');
    const given = String(req.headers['x-colloquy-signature'] ?? '');
    const expected = `sha256=${createHmac('sha256', secret).update(`${timestamp}.${raw}`).digest('hex')}`;
    const signed =
      given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
    s.received.push({ body, signed });
    if (!signed) return { status: 401, body: { error: 'bad signature' } };
    const text = String(body.text ?? '');
    if (text.includes('slowly')) await pause(req, 30_000);
    if (text.includes('webhook-block')) return { status: 200, body: { action: 'block', category: 'policy' } };
    if (text.includes('rewrite-me'))
      return { status: 200, body: { action: 'rewrite', text: text.replaceAll('rewrite-me', 'rewritten') } };
    return { status: 200, body: { action: 'allow' } };
  });
  return s;
}
