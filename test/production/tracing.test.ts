import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { bearer, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

/** A minimal OTLP/HTTP collector: keeps every exported span. */
async function startCollector() {
  const spans: OtlpSpan[] = [];
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    if (req.url === '/v1/traces') {
      const payload = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
      for (const rs of payload.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    close: () => server.close(),
  };
}

const attr = (span: OtlpSpan, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value ? Object.values(value)[0] : undefined;
};

describe('OpenTelemetry traces', () => {
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let t: TestApp;
  before(async () => {
    collector = await startCollector();
    t = await startTestApp({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, DEMO_WORD_DELAY_MS: '0' } });
  });
  after(async () => {
    await t.close();
    collector.close();
  });

  it('exports a server span per request and a GenAI client span per model call, tied by the request id', async () => {
    const res = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(TEST_MASTER_KEY), 'x-request-id': 'trace-me-123' },
      payload: { model: 'demo', messages: [{ role: 'user', content: 'trace this' }] },
    });
    assert.equal(res.statusCode, 200);
    await t.app.close(); // flushes the exporter
    await eventually(() => collector.spans.length >= 2, 5_000, 'spans exported');
    const server = collector.spans.find(
      (s) => attr(s, 'colloquy.request_id') === 'trace-me-123' && s.kind === 2,
    );
    const llm = collector.spans.find((s) => attr(s, 'gen_ai.operation.name') === 'chat');
    assert.ok(server, 'a server span carries the request id');
    assert.equal(server.name, 'POST /v1/chat/completions');
    assert.equal(attr(server, 'http.response.status_code'), 200);
    assert.ok(llm, 'a GenAI span');
    assert.equal(llm.traceId, server.traceId);
    assert.equal(llm.parentSpanId, server.spanId);
    assert.equal(attr(llm, 'gen_ai.request.model'), 'demo');
    assert.equal(attr(llm, 'gen_ai.provider.name'), 'demo');
    assert.ok(Number(attr(llm, 'gen_ai.usage.output_tokens')) > 0);
    // The same trace id is on the request's log lines.
    assert.match(t.logText(), new RegExp(`"trace_id":"${server.traceId}"`));
  });
});
