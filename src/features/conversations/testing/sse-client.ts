import http from 'node:http';

export interface SseEvent {
  id: number | null;
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: test payloads are inspected freely
  data: any;
}

/** What a failed wait got, shortened: a test may stream megabytes. */
const excerpt = (items: unknown[]) => {
  const text = JSON.stringify(items);
  return text.length > 4_000 ? `${text.slice(0, 2_000)} … ${text.slice(-2_000)}` : text;
};

/** Parses a complete text/event-stream body (comments and keep-alives skipped). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split('\n\n')) {
    let id: number | null = null;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('id: ')) id = Number(line.slice(4));
      else if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length) events.push({ id, event, data: JSON.parse(data.join('\n')) });
  }
  return events;
}

/** A real HTTP SSE connection, for tests that disconnect mid-stream or read events as they come. */
export class SseConnection {
  readonly events: SseEvent[] = [];
  readonly ended: Promise<void>;
  #buffer = '';
  #waiters: (() => void)[] = [];
  #markEnded!: () => void;

  private constructor(
    private readonly request: http.ClientRequest,
    readonly response: http.IncomingMessage,
  ) {
    this.ended = new Promise((resolve) => {
      this.#markEnded = resolve;
    });
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let end = this.#buffer.indexOf('\n\n');
      while (end >= 0) {
        this.events.push(...parseSse(this.#buffer.slice(0, end + 2)));
        this.#buffer = this.#buffer.slice(end + 2);
        end = this.#buffer.indexOf('\n\n');
      }
      this.#wake();
    });
    const finish = () => {
      this.#markEnded();
      this.#wake();
    };
    response.on('end', finish);
    response.on('close', finish);
    response.on('error', finish);
  }

  static open(
    url: string,
    options: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
  ): Promise<SseConnection> {
    return new Promise((resolve, reject) => {
      const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
      const request = http.request(url, {
        method: options.method ?? 'GET',
        headers: {
          accept: 'text/event-stream',
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...options.headers,
        },
      });
      request.on('response', (response) => resolve(new SseConnection(request, response)));
      request.on('error', reject);
      request.end(payload);
    });
  }

  get status() {
    return this.response.statusCode;
  }

  /** Resolves with the first event matching, waiting for it to arrive. */
  async waitFor(predicate: (event: SseEvent) => boolean, timeoutMs = 5_000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const found = this.events.find(predicate);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for an event; got ${this.events.length}: ${excerpt(this.events)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Drops the connection as a client going away would. */
  close() {
    this.request.destroy();
    this.response.destroy();
  }

  #wake() {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
