/**
 * The tests in deliberately-failing.test.ts fail on purpose and are skipped unless their flag is set;
 * suite-ends.test.ts runs them in a child process (issue #18).
 */
export const FAILING_LOAD_FLAG = 'COLLOQUY_SELF_CHECK_FAILING_LOAD';
export const HUNG_TEST_FLAG = 'COLLOQUY_SELF_CHECK_HUNG_TEST';
export const FAILING_LOAD_TEST = 'self-check: a load test whose assertion fails mid-load (deliberately)';
export const HUNG_TEST = 'self-check: a test that never ends (deliberately)';
export const FIXTURE = 'test/reliability/deliberately-failing.test.ts';
