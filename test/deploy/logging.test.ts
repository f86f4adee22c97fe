import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { parse } from 'yaml';
import { createLogger, deferredRequestLogger, type Logger } from '../../src/core/logger.js';

/**
 * The log-shipping kit (deploy/logging). Vector and Fluent Bit are packaged by neither Debian nor npm, nor is
 * Elasticsearch: their files are checked here against Colloquy's real ECS lines (LOG_FORMAT=ecs) — every
 * field a line carries is mapped by the index template with a type its value fits, the collectors' JSON
 * parsing (and Fluent Bit's time format) accepts the lines, and the pipelines are wired end to end.
 */
const read = (file: string) => readFileSync(new URL(`../../deploy/logging/${file}`, import.meta.url), 'utf8');

/** Real lines: a request that fails, through Fastify with Colloquy's ECS logger. */
async function realEcsLines(): Promise<Record<string, unknown>[]> {
  let text = '';
  const destination = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const logger = createLogger({ level: 'info', format: 'ecs', destination });
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    childLoggerFactory: (parent, bindings, options) =>
      deferredRequestLogger(parent as Logger, bindings, options) as FastifyBaseLogger,
    genReqId: () => 'req_ship1',
  });
  app.get('/fail', async (request) => {
    request.log.child({ trace_id: '0af7651916cd43dd8448eb211c80319c' }).warn({ model: 'gpt-4o' }, 'slow');
    throw Object.assign(new Error('upstream said no'), { code: 'E_UPSTREAM' });
  });
  await app.inject({ method: 'GET', url: '/fail', headers: { 'user-agent': 'test' } });
  await app.close();
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface Mapping {
  type?: string;
  properties?: Record<string, Mapping>;
}

function mappingOf(properties: Record<string, Mapping>, dotted: string): Mapping | undefined {
  // ECS dotted keys are objects in Elasticsearch: "http.request.id" is http → request → id.
  const parts = dotted.split('.');
  let node: Mapping | undefined = { properties };
  for (const part of parts) node = node?.properties?.[part];
  return node ?? properties[dotted];
}

const fits = (type: string, value: unknown) =>
  type === 'date'
    ? typeof value === 'string' && !Number.isNaN(Date.parse(value))
    : type === 'long'
      ? Number.isInteger(value)
      : ['keyword', 'text', 'match_only_text', 'wildcard'].includes(type) && typeof value === 'string';

describe('log shipping (deploy/logging)', () => {
  it('the index template maps every ECS field of real lines, each with a type its value fits', async () => {
    const template = JSON.parse(read('elasticsearch/index-template.json'));
    const lines = await realEcsLines();
    assert.ok(lines.length >= 3);
    const ecsFields = new Set<string>();
    for (const line of lines)
      for (const [key, value] of Object.entries(line)) {
        if (!key.includes('.') && !['@timestamp', 'message'].includes(key)) continue; // custom fields: dynamic
        ecsFields.add(key);
        const mapping = mappingOf(template.template.mappings.properties, key);
        assert.ok(mapping?.type, `${key} is mapped`);
        assert.ok(fits(mapping.type, value), `${key}: ${JSON.stringify(value)} fits ${mapping.type}`);
      }
    for (const key of [
      'http.request.id',
      'trace.id',
      'error.message',
      'log.level',
      'http.response.status_code',
    ])
      assert.ok(ecsFields.has(key), `real lines carry ${key}`);
    assert.deepEqual(template.index_patterns, ['logs-colloquy-*']);
    assert.deepEqual(template.data_stream, {});
    const ilm = JSON.parse(read('elasticsearch/ilm-policy.json'));
    assert.equal(template.template.settings['index.lifecycle.name'], 'colloquy-logs');
    assert.ok(ilm.policy.phases.hot.actions.rollover && ilm.policy.phases.delete.actions.delete);
  });

  it('the saved search finds error lines by request id, on the data view of the template', () => {
    const [view, search] = read('kibana/colloquy-saved-objects.ndjson')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(view.type, 'index-pattern');
    assert.equal(view.attributes.title, 'logs-colloquy-*');
    assert.equal(search.type, 'search');
    assert.equal(search.references[0].id, view.id);
    const source = JSON.parse(search.attributes.kibanaSavedObjectMeta.searchSourceJSON);
    assert.match(source.query.query, /log\.level:\(error or fatal\)/);
    assert.ok(search.attributes.columns.includes('http.request.id'));
  });

  it('Vector: docker logs → JSON (the whole line becomes the event) → Elasticsearch data stream and Loki', () => {
    const config = parse(read('vector.yaml'));
    const ids = new Set([...Object.keys(config.sources), ...Object.keys(config.transforms)]);
    for (const section of ['transforms', 'sinks'])
      for (const [name, component] of Object.entries<{ inputs: string[] }>(config[section]))
        for (const input of component.inputs)
          assert.ok(ids.has(input), `${name} reads ${input}, which exists`);
    assert.equal(config.sources.colloquy_containers.type, 'docker_logs');
    assert.equal(config.transforms.colloquy_ecs.type, 'remap');
    assert.match(config.transforms.colloquy_ecs.source, /parse_json\(\.message\)/);
    const es = config.sinks.elasticsearch;
    assert.equal(es.mode, 'data_stream');
    // The data stream's name must match the template: logs-colloquy-<namespace>.
    assert.equal(
      `${es.data_stream.type}-${es.data_stream.dataset}-${es.data_stream.namespace}`,
      'logs-colloquy-default',
    );
    assert.equal(config.sinks.loki.type, 'loki');
    assert.equal(config.sinks.loki.encoding.codec, 'json');
  });

  it("Fluent Bit: its parsers take Colloquy's real lines in Docker's wrapper, time format included", async () => {
    const config = parse(read('fluent-bit.yaml'));
    const parsers = new Map<string, Record<string, string>>();
    for (const block of read('parsers.conf').split('[PARSER]').slice(1)) {
      const entries = block
        .trim()
        .split('\n')
        .filter((l) => l.trim() && !l.trim().startsWith('#'))
        .map((l) => l.trim().split(/\s+/, 2).concat(l.trim().split(/\s+/).slice(2).join(' ')));
      const fields = Object.fromEntries(entries.map(([k, v, rest]) => [k!, rest ? `${v} ${rest}` : v!]));
      parsers.set(fields.Name!, fields);
    }
    const input = config.pipeline.inputs[0];
    const filter = config.pipeline.filters[0];
    assert.equal(parsers.get(input.parser)?.Format, 'json');
    assert.equal(filter.key_name, 'log');
    const json = parsers.get(filter.parser)!;
    assert.equal(json.Format, 'json');
    // strftime → a regex for the fields used, then each real line's time must match it exactly.
    const timeRegex = new RegExp(
      `^${json
        .Time_Format!.replace('%Y', '\\d{4}')
        .replace('%m', '\\d{2}')
        .replace('%d', '\\d{2}')
        .replace('%H', '\\d{2}')
        .replace('%M', '\\d{2}')
        .replace('%S', '\\d{2}')
        .replace('%L', '\\d{3}')}$`,
    );
    for (const line of await realEcsLines()) {
      // What Docker's json-file driver writes, and what the two parsers turn back into Colloquy's line.
      const wrapped = JSON.stringify({
        log: `${JSON.stringify(line)}\n`,
        stream: 'stdout',
        time: new Date(),
      });
      const record = JSON.parse(JSON.parse(wrapped)[filter.key_name]);
      assert.deepEqual(record, line);
      assert.match(String(record[json.Time_Key!]), timeRegex);
    }
    const outputs = config.pipeline.outputs;
    const es = outputs.find((o: { name: string }) => o.name === 'es');
    assert.match(es.index, /^logs-colloquy-/);
    assert.equal(es.write_operation, 'create', 'data streams take only create');
    assert.ok(outputs.some((o: { name: string }) => o.name === 'loki'));
  });
});
