import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { VERSION } from '../version.js';
import { ECS_VERSION } from './log-ecs.js';
import { createLogger, deferredRequestLogger, type Logger } from './logger.js';

const SECRET = 'master-key-value-0123456789abcdefghijklmnop';

function capture() {
  let text = '';
  const destination = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const lines = () =>
    text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { destination, lines };
}

describe('LOG_FORMAT=ecs', () => {
  it("Fastify's request lines come out in ECS names: request id, method, URL, status, duration", async () => {
    const out = capture();
    const logger = createLogger({
      level: 'info',
      format: 'ecs',
      destination: out.destination,
      secrets: [SECRET],
    });
    const app = Fastify({
      loggerInstance: logger as FastifyBaseLogger,
      childLoggerFactory: (parent, bindings, options) =>
        deferredRequestLogger(parent as Logger, bindings, options) as FastifyBaseLogger,
      genReqId: () => 'req_ecs1',
    });
    app.get('/boom', async (request) => {
      request.log.child({ trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' }).warn('about to fail');
      throw new Error(`upstream refused key ${SECRET}`);
    });
    try {
      const res = await app.inject({
        method: 'GET',
        url: '/boom?x=1',
        headers: { authorization: `Bearer ${SECRET}`, 'user-agent': 'curl/8' },
      });
      assert.equal(res.statusCode, 500);
    } finally {
      await app.close();
    }
    const lines = out.lines();
    for (const line of lines) {
      assert.match(String(line['@timestamp']), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      assert.equal(line['ecs.version'], ECS_VERSION);
      assert.equal(line['service.name'], 'colloquy');
      assert.equal(line['service.version'], VERSION);
      assert.equal(line['process.pid'], process.pid);
      assert.equal(typeof line['log.level'], 'string');
      assert.equal(typeof line.message, 'string');
      for (const legacy of ['time', 'level', 'msg', 'pid', 'reqId', 'trace_id', 'req', 'res', 'err'])
        assert.equal(line[legacy], undefined, `${legacy} in ${JSON.stringify(line)}`);
    }
    const text = JSON.stringify(lines);
    assert.doesNotMatch(text, new RegExp(SECRET), 'the secret never reaches a line');
    assert.doesNotMatch(text, /authorization/i, 'no credential header is logged');

    const incoming = lines.find((l) => l.message === 'incoming request')!;
    assert.equal(incoming['http.request.id'], 'req_ecs1');
    assert.equal(incoming['http.request.method'], 'GET');
    assert.equal(incoming['url.original'], '/boom?x=1');
    assert.equal(incoming['user_agent.original'], 'curl/8');

    const warned = lines.find((l) => l.message === 'about to fail')!;
    assert.equal(warned['log.level'], 'warn');
    assert.equal(warned['trace.id'], '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(warned['http.request.id'], 'req_ecs1');

    const failed = lines.find((l) => l['error.message'] !== undefined)!;
    assert.equal(failed['log.level'], 'error');
    assert.equal(failed['error.type'], 'Error');
    assert.match(String(failed['error.message']), /upstream refused key \[REDACTED\]/);
    assert.match(String(failed['error.stack_trace']), /at /);

    const completed = lines.find((l) => l.message === 'request completed')!;
    assert.equal(completed['http.request.id'], 'req_ecs1');
    assert.equal(completed['http.response.status_code'], 500);
    assert.ok(Number(completed['event.duration']) > 0, 'duration in nanoseconds');
  });

  it('field redaction still applies to custom fields', () => {
    const out = capture();
    const logger = createLogger({ level: 'info', format: 'ecs', destination: out.destination });
    logger.info({ password: 'hunter2-password', user: { refresh_token: 'rt-secret' } }, 'login');
    const [line] = out.lines();
    assert.equal(line!.password, '[REDACTED]');
    assert.deepEqual(line!.user, { refresh_token: '[REDACTED]' });
    assert.equal(line!.message, 'login');
  });
});
