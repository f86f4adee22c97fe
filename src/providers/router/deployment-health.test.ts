import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DemoProvider } from '../demo/provider.js';
import { DeploymentHealth, HEALTH_WINDOW_MS } from './deployment-health.js';
import { ModelRouter } from './model-router.js';

const providers = () => {
  const map = new Map();
  map.set('demo', new DemoProvider('demo', 0));
  map.set('spare', new DemoProvider('spare', 0));
  return map;
};

const routerWithAlias = () =>
  new ModelRouter(
    providers(),
    {
      models: [
        {
          name: 'chat',
          deployments: [
            { provider: 'demo', model: 'demo' },
            { provider: 'spare', model: 'demo', priority: 1 },
          ],
        },
      ],
    },
    { failures: 5, cooldownMs: 1_000 },
  );

describe('deployment health', () => {
  it('reports error ratio and latency percentiles over the window only', () => {
    const router = routerWithAlias();
    const health = new DeploymentHealth();
    const now = 10 * HEALTH_WINDOW_MS;
    // An old failure, outside the window: forgotten.
    health.attempt('demo/demo', false, now - HEALTH_WINDOW_MS - 1);
    health.latency('demo/demo', 99_999, now - HEALTH_WINDOW_MS - 1);
    for (let i = 1; i <= 20; i++) {
      health.attempt('demo/demo', i % 5 !== 0, now - i);
      health.latency('demo/demo', i * 10, now - i);
    }
    health.timeToFirstToken('demo/demo', 40, now);
    const [route] = health.report(router, now);
    assert.equal(route!.name, 'chat');
    assert.equal(route!.kind, 'alias');
    const [primary, spare] = route!.deployments;
    assert.equal(primary!.attempts, 20);
    assert.equal(primary!.failures, 4);
    assert.equal(primary!.error_ratio, 0.2);
    assert.equal(primary!.p50_latency_ms, 110);
    assert.equal(primary!.p95_latency_ms, 200);
    assert.equal(primary!.p50_ttft_ms, 40);
    assert.equal(primary!.state, 'closed');
    assert.deepEqual(
      [spare!.id, spare!.priority, spare!.attempts, spare!.error_ratio, spare!.p50_latency_ms],
      ['spare/demo', 1, 0, null, null],
    );
  });

  it('keeps only the newest 256 samples per series', () => {
    const router = routerWithAlias();
    const health = new DeploymentHealth();
    for (let i = 0; i < 1000; i++) health.attempt('demo/demo', i >= 744, i);
    const primary = health.report(router, 1000)[0]!.deployments[0]!;
    assert.equal(primary.attempts, 256);
    assert.equal(primary.failures, 0, 'the 744 old failures were overwritten');
  });

  it('lists deployments reached by a direct model name after the aliases', () => {
    const router = routerWithAlias();
    router.resolve('spare/other-model');
    const health = new DeploymentHealth();
    health.attempt('spare/other-model', false, 5);
    const routes = health.report(router, 10);
    assert.deepEqual(
      routes.map((r) => [r.name, r.kind]),
      [
        ['chat', 'alias'],
        ['spare/other-model', 'direct'],
      ],
    );
    assert.equal(routes[1]!.deployments[0]!.error_ratio, 1);
  });
});
