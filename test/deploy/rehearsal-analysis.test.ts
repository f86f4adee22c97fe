import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AnalysisMetric,
  argoResult,
  evaluateExpr,
  measurementPhase,
  resolveArgs,
  shippedAnalysis,
  substitute,
} from './rehearsal-analysis.js';

/**
 * The rehearsal judges the canary with this reading of Argo's AnalysisTemplate semantics; these checks pin
 * it to Argo's documented behaviour, so a wrong verdict cannot come from the evaluator itself.
 */
describe('Argo analysis evaluation used by the rehearsal', () => {
  const metric = (conditions: Partial<AnalysisMetric>): AnalysisMetric => ({
    name: 'm',
    provider: { prometheus: { address: 'http://p', query: 'q' } },
    ...conditions,
  });

  it('evaluates the shipped conditions as expr-lang does, short-circuits included', () => {
    const { template } = shippedAnalysis();
    const errorRatio = template.spec.metrics.find((m) => m.name === 'error-ratio')!;
    assert.equal(measurementPhase(errorRatio, []), 'Successful', 'no data is not a failure');
    assert.equal(measurementPhase(errorRatio, [Number.NaN]), 'Successful');
    assert.equal(measurementPhase(errorRatio, [0.01]), 'Successful');
    assert.equal(measurementPhase(errorRatio, [0.0101]), 'Failed');
    for (const m of template.spec.metrics) {
      assert.ok(m.successCondition && !m.failureCondition, `${m.name}: success condition only`);
      assert.equal(measurementPhase(m, [1e6]), 'Failed', `${m.name} fails on a huge value`);
    }
  });

  it('applies Argo’s phase rules for success/failure conditions', () => {
    assert.equal(measurementPhase(metric({ failureCondition: 'result[0] > 5' }), [6]), 'Failed');
    assert.equal(measurementPhase(metric({ failureCondition: 'result[0] > 5' }), [4]), 'Successful');
    const both = metric({ successCondition: 'result[0] < 1', failureCondition: 'result[0] > 5' });
    assert.equal(measurementPhase(both, [3]), 'Inconclusive');
    assert.equal(measurementPhase(metric({}), [3]), 'Successful');
    // A runtime error (index out of range without the len() guard) is an Error measurement, not a pass.
    assert.equal(measurementPhase(metric({ successCondition: 'result[0] <= 1' }), []), 'Error');
  });

  it('covers the operators and refuses what it does not know', () => {
    const env = { result: [2, 3] };
    assert.equal(evaluateExpr('result[0] * 2 + result[1] == 7 && !(result[1] < 3)', env), true);
    assert.equal(evaluateExpr('len(result) > 1 and not isInf(result[-1])', env), true);
    assert.equal(evaluateExpr('-result[0] >= -2 or nil == true', env), true);
    assert.throws(() => evaluateExpr('result[0] in [1, 2]', env), /unknown name in|unexpected/);
    assert.throws(() => evaluateExpr('mean(result)', env), /unknown function mean/);
    assert.throws(() => evaluateExpr('result[0] <=', env), /unexpected end/);
  });

  it('resolves arguments and PromQL answers as Argo does', () => {
    const { template, rolloutArgs } = shippedAnalysis();
    assert.throws(() => resolveArgs(template, []), /args\.namespace was not resolved/);
    const args = resolveArgs(template, rolloutArgs);
    assert.equal(args.namespace, 'colloquy');
    assert.match(args['prometheus-address']!, /^http:\/\//);
    assert.throws(
      () => resolveArgs(template, [...rolloutArgs, { name: 'typo', value: 'x' }]),
      /not declared/,
    );
    assert.equal(substitute('a{{args.namespace}}b{{ args.namespace }}', args), 'acolloquybcolloquy');
    assert.throws(() => substitute('{{args.missing}}', args), /no such argument/);
    assert.throws(() => substitute('{{workflow.name}}', args), /unresolved/);
    assert.deepEqual(
      argoResult({ resultType: 'vector', result: [{ value: [0, '0.5'] }, { value: [0, 'NaN'] }] }),
      [0.5, Number.NaN],
    );
    assert.equal(argoResult({ resultType: 'scalar', result: [0, '2'] }), 2);
    assert.throws(() => argoResult({ resultType: 'matrix', result: [] }), /does not handle a matrix/);
  });
});
