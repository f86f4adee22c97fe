import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/**
 * A Sentry ingestion endpoint, written from Sentry's published envelope format
 * (https://develop.sentry.dev/sdk/envelopes/, "Envelope Endpoint" and "Authentication"): `POST
 * /api/{project_id}/envelope/`, authenticated by an `X-Sentry-Auth: Sentry sentry_key=…` header or by
 * `sentry_key` in the query string; the body (gzip when `Content-Encoding: gzip`) is newline-separated: an
 * envelope header (JSON), then per item an item header (JSON, `type` and optional `length`) and its payload
 * (`length` bytes, or up to the next newline). GlitchTip accepts the same endpoint.
 */
export interface EnvelopeItem {
  header: { type: string; length?: number; [key: string]: unknown };
  payload: unknown;
}
export interface ReceivedEnvelope {
  header: Record<string, unknown>;
  items: EnvelopeItem[];
  /** The body as received (decompressed), for searching the raw bytes. */
  raw: Buffer;
}

export function parseEnvelope(raw: Buffer): Omit<ReceivedEnvelope, 'raw'> {
  let pos = 0;
  const line = () => {
    const end = raw.indexOf(0x0a, pos);
    const text = raw.subarray(pos, end === -1 ? raw.length : end);
    pos = end === -1 ? raw.length : end + 1;
    return text;
  };
  const header = JSON.parse(line().toString('utf8')) as Record<string, unknown>;
  const items: EnvelopeItem[] = [];
  while (pos < raw.length) {
    const headerLine = line();
    if (headerLine.length === 0) continue;
    const itemHeader = JSON.parse(headerLine.toString('utf8')) as EnvelopeItem['header'];
    let payload: Buffer;
    if (typeof itemHeader.length === 'number') {
      payload = raw.subarray(pos, pos + itemHeader.length);
      pos += itemHeader.length;
      if (raw[pos] === 0x0a) pos += 1;
    } else payload = line();
    const text = payload.toString('utf8');
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // attachments may be binary or plain text
    }
    items.push({ header: itemHeader, payload: parsed });
  }
  return { header, items };
}

export interface FakeSentry {
  /** The DSN of project 42 on this server. */
  dsn: string;
  envelopes: ReceivedEnvelope[];
  /** Error events (item type `event`), in arrival order. */
  events(): Record<string, unknown>[];
  rejected: number;
  /** Milliseconds the server holds each envelope before accepting it (a slow ingestion endpoint). */
  delayMs: number;
  close(): Promise<void>;
}

export async function startFakeSentry(publicKey = 'fakepublickey0123456789abcdef'): Promise<FakeSentry> {
  const envelopes: ReceivedEnvelope[] = [];
  const state = { rejected: 0, delayMs: 0 };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const authHeader = String(req.headers['x-sentry-auth'] ?? '');
    const key = url.searchParams.get('sentry_key') ?? /sentry_key=([^,\s]+)/.exec(authHeader)?.[1];
    if (req.method !== 'POST' || url.pathname !== '/api/42/envelope/' || key !== publicKey) {
      state.rejected += 1;
      res.writeHead(key === publicKey ? 404 : 401).end();
      return;
    }
    if (state.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, state.delayMs));
    let raw = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
    envelopes.push({ ...parseEnvelope(raw), raw });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    dsn: `http://${publicKey}@127.0.0.1:${port}/42`,
    envelopes,
    events: () =>
      envelopes.flatMap((e) =>
        e.items.filter((i) => i.header.type === 'event').map((i) => i.payload as Record<string, unknown>),
      ),
    get rejected() {
      return state.rejected;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
