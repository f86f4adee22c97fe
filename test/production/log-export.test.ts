import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load-config.js';
import { createLogger, flushLogExport } from '../../src/core/logger.js';
import { bearer, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';

/**
 * An OTLP/HTTP logs collector written from the OTLP specification: POST /v1/logs with an
 * ExportLogsServiceRequest in the JSON encoding (https://opentelemetry.io/docs/specs/otlp/#otlphttp-request,
 * https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding: trace and span ids as hex strings, enums as
 * integers, 64-bit integers as decimal strings or numbers, lowerCamelCase field names), answering an
 * ExportLogsServiceResponse. Anything not in that shape fails the test.
 */
type AnyValue = Record<string, unknown>;
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface LogRecord {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText: string;
  body: AnyValue;
  attributes: KeyValue[];
  traceId?: string;
  spanId?: string;
}
interface Received {
  resource: Record<string, unknown>;
  scope: string;
  record: LogRecord;
}

function decodeValue(value: AnyValue): unknown {
  const [kind, inner] = Object.entries(value)[0] ?? [];
  switch (kind) {
    case undefined:
      return null; // An AnyValue with no value set is a null (common.proto, AnyValue).
    case 'stringValue':
    case 'boolValue':
    case 'doubleValue':
      return inner;
    case 'intValue':
      return Number(inner);
    case 'kvlistValue':
      return decodeAttributes((inner as { values: KeyValue[] }).values ?? []);
    case 'arrayValue':
      return ((inner as { values?: AnyValue[] }).values ?? []).map(decodeValue);
    default:
      throw new Error(`not an OTLP AnyValue: ${JSON.stringify(value)}`);
  }
}
const decodeAttributes = (list: KeyValue[]) =>
  Object.fromEntries(list.map((kv) => [kv.key, decodeValue(kv.value)]));

async function startCollector() {
  const received: Received[] = [];
  const failures: string[] = [];
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    // Traces go to the same collector (OTEL_EXPORTER_OTLP_ENDPOINT): tests/production/tracing.test.ts reads them.
    if (req.url === '/v1/traces') return res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    try {
      assert.equal(req.method, 'POST');
      assert.equal(req.url, '/v1/logs');
      assert.match(String(req.headers['content-type']), /^application\/json/);
      const payload = JSON.parse(body) as {
        resourceLogs: {
          resource: { attributes: KeyValue[] };
          scopeLogs: { scope: { name: string }; logRecords: LogRecord[] }[];
        }[];
      };
      for (const rl of payload.resourceLogs) {
        const resource = decodeAttributes(rl.resource.attributes);
        for (const sl of rl.scopeLogs)
          for (const record of sl.logRecords) {
            assert.match(String(record.timeUnixNano), /^\d{19}$/, 'nanoseconds since the epoch');
            assert.ok(Number.isInteger(record.severityNumber), 'severityNumber is an enum integer');
            if (record.traceId !== undefined) assert.match(record.traceId, /^[0-9a-f]{32}$/, 'hex trace id');
            if (record.spanId !== undefined) assert.match(record.spanId, /^[0-9a-f]{16}$/, 'hex span id');
            received.push({ resource, scope: sl.scope.name, record });
          }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } catch (err) {
      failures.push((err as Error).message);
      res.writeHead(400, { 'content-type': 'application/json' }).end('{}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    failures,
    close: () => server.close(),
  };
}

const attributes = (r: Received) => decodeAttributes(r.record.attributes);
const bodyOf = (r: Received) => decodeValue(r.record.body);

describe('OTEL_LOGS_EXPORTER=otlp', () => {
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let t: TestApp;
  before(async () => {
    collector = await startCollector();
    t = await startTestApp({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_LOGS_EXPORTER: 'otlp',
        LOG_LEVEL: 'info',
        DEMO_WORD_DELAY_MS: '0',
      },
    });
  });
  after(async () => {
    await t.close();
    await flushLogExport();
    collector.close();
  });

  it("a request's log lines arrive as OTLP log records with its request id and the trace id of its span", async () => {
    const res = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(TEST_MASTER_KEY), 'x-request-id': 'otlp-log-42' },
      payload: { model: 'demo', messages: [{ role: 'user', content: 'log this' }] },
    });
    assert.equal(res.statusCode, 200);
    await t.app.close();
    await flushLogExport();
    await eventually(
      () =>
        collector.received.some(
          (r) => bodyOf(r) === 'request completed' && attributes(r).reqId === 'otlp-log-42',
        ),
      10_000,
      'the request lines exported',
    );
    assert.deepEqual(collector.failures, []);
    const mine = collector.received.filter((r) => attributes(r).reqId === 'otlp-log-42');
    const completed = mine.find((r) => bodyOf(r) === 'request completed')!;
    assert.equal(completed.record.severityNumber, 9, 'INFO');
    assert.equal(completed.record.severityText, 'INFO');
    assert.equal(completed.resource['service.name'], 'colloquy');
    assert.equal(typeof completed.resource['service.version'], 'string');
    assert.equal(completed.scope, 'colloquy');
    assert.equal((attributes(completed).res as { statusCode: number }).statusCode, 200);
    // Logs sit beside the traces: a line bound to the request's span carries its trace and span ids.
    const traced = t.logLines().find((l) => l.reqId === 'otlp-log-42' && typeof l.trace_id === 'string')!;
    assert.ok(traced, 'a stdout line of the request carries the trace id');
    const tracedRecord = mine.find((r) => bodyOf(r) === traced.msg)!;
    assert.equal(tracedRecord.record.traceId, traced.trace_id);
    assert.equal(tracedRecord.record.spanId, traced.span_id);
    assert.equal(attributes(tracedRecord).trace_id, undefined, "the ids are the record's own fields");
    // Timestamps are the line's own (milliseconds → nanoseconds), not the export time.
    const line = t.logLines().find((l) => l.reqId === 'otlp-log-42' && l.msg === 'request completed')!;
    assert.equal(completed.record.timeUnixNano, `${line.time}000000`);
  });

  it('records are redacted and scrubbed exactly as stdout lines are', async () => {
    const logger = createLogger({
      level: 'info',
      format: 'json',
      destination: new Writable({ write: (_c, _e, done) => done() }),
      otlp: { endpoint: collector.url, serviceName: 'colloquy-scrub', track: 'canary' },
    });
    logger.error(
      { password: 'hunter2-password', user: { api_key: 'k-123456789' } },
      'login Bearer abc.def.ghi failed',
    );
    await flushLogExport();
    await eventually(
      () => collector.received.some((r) => r.resource['service.name'] === 'colloquy-scrub'),
      10_000,
      'the record exported',
    );
    const record = collector.received.find((r) => r.resource['service.name'] === 'colloquy-scrub')!;
    assert.equal(record.resource['deployment.track'], 'canary');
    assert.equal(record.record.severityNumber, 17, 'ERROR');
    assert.equal(bodyOf(record), 'login Bearer [REDACTED] failed');
    assert.equal(attributes(record).password, '[REDACTED]');
    assert.deepEqual(attributes(record).user, { api_key: '[REDACTED]' });
    assert.doesNotMatch(JSON.stringify(record), /hunter2|k-123456789|abc\.def/);
  });

  it('refuses otlp without a collector to send to', () => {
    assert.throws(
      () => loadConfig({ OTEL_LOGS_EXPORTER: 'otlp' }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems.some((p) => /OTEL_LOGS_EXPORTER: otlp needs OTEL_EXPORTER_OTLP_ENDPOINT/.test(p)),
    );
  });
});
