import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import client from 'prom-client';
import { CounterCells, HistogramCells } from './label-cells.js';

const BUCKETS = [0.005, 0.1, 1];

function pair() {
  const registry = new client.Registry();
  const make = (name: string) => ({
    counter: new client.Counter({
      name: `${name}_total`,
      help: 'h',
      labelNames: ['provider', 'model', 'status'],
      registers: [registry],
    }),
    histogram: new client.Histogram({
      name: `${name}_seconds`,
      help: 'h',
      labelNames: ['route', 'method'],
      buckets: BUCKETS,
      registers: [registry],
    }),
  });
  return { registry, ours: make('ours'), theirs: make('theirs') };
}

/** The exposition text of one family, renamed, so ours and prom-client's own can be compared. */
async function family(registry: client.Registry, prefix: string) {
  return (await registry.metrics())
    .split('\n')
    .filter((line) => line.startsWith(prefix))
    .map((line) => line.slice(prefix.length))
    .join('\n');
}

describe('metric label cells', () => {
  it('export what prom-client itself exports for the same observations', async () => {
    const { registry, ours, theirs } = pair();
    const counter = new CounterCells(ours.counter, ['provider', 'model', 'status']);
    const histogram = new HistogramCells(ours.histogram, ['route', 'method']);
    const observations: [string, string, string, number][] = [
      ['openai', 'gpt-4o', 'ok', 1],
      ['openai', 'gpt-4o', 'ok', 3],
      ['openai', 'gpt-4o', 'error', 0],
      ['anthropic', 'claude', 'ok', 2.5],
      ['openai', 'gpt-4o', 'ok', 1],
    ];
    const latencies = [0.001, 0.005, 0.05, 0.5, 7, 0.1, 0.0051];
    for (const [provider, model, status, n] of observations) {
      counter.inc(n, provider, model, status);
      theirs.counter.inc({ provider, model, status }, n);
    }
    for (const [i, seconds] of latencies.entries()) {
      const method = i % 2 ? 'GET' : 'POST';
      histogram.observe(seconds, '/v1/chat/completions', method);
      theirs.histogram.observe({ route: '/v1/chat/completions', method }, seconds);
    }
    assert.equal(await family(registry, 'ours_total'), await family(registry, 'theirs_total'));
    assert.equal(await family(registry, 'ours_seconds'), await family(registry, 'theirs_seconds'));
    assert.match(await family(registry, 'ours_total'), /provider="openai",model="gpt-4o",status="ok"} 5/);
  });

  it('count again from zero after the metric is reset or a series removed', async () => {
    const { registry, ours } = pair();
    const counter = new CounterCells(ours.counter, ['provider', 'model', 'status']);
    const histogram = new HistogramCells(ours.histogram, ['route', 'method']);
    counter.inc(4, 'a', 'm', 'ok');
    histogram.observe(0.5, '/x', 'GET');
    ours.counter.reset();
    ours.histogram.remove({ route: '/x', method: 'GET' });
    counter.inc(1, 'a', 'm', 'ok');
    histogram.observe(0.05, '/x', 'GET');
    const text = await registry.metrics();
    assert.match(text, /ours_total\{provider="a",model="m",status="ok"} 1\n/);
    assert.match(text, /ours_seconds_count\{route="\/x",method="GET"} 1\n/);
    assert.match(text, /ours_seconds_bucket\{le="0.1",route="\/x",method="GET"} 1\n/);
  });

  it('refuse what prom-client refuses', () => {
    const { ours } = pair();
    const counter = new CounterCells(ours.counter, ['provider', 'model', 'status']);
    const histogram = new HistogramCells(ours.histogram, ['route', 'method']);
    counter.inc(1, 'a', 'm', 'ok');
    histogram.observe(1, '/x', 'GET');
    assert.throws(() => counter.inc(-1, 'a', 'm', 'ok'), /not possible to decrease/);
    assert.throws(() => counter.inc(Number.POSITIVE_INFINITY, 'a', 'm', 'ok'), /not a valid number/);
    assert.throws(() => histogram.observe(Number.POSITIVE_INFINITY, '/x', 'GET'), /not a valid number/);
  });
});
