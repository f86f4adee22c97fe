import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bedrockErrorMapper } from './errors.js';

/**
 * Bedrock Runtime's documented errors (API_runtime_Converse.html#API_runtime_Converse_Errors): the type from
 * `x-amzn-ErrorType` (with its `:http://internal…` tail) or the body's `__type`, the text from `message`
 * or `Message`.
 */
const map = bedrockErrorMapper('bedrock');
const answer = (status: number, body: unknown, type?: string) =>
  map(status, JSON.stringify(body), (name) => (name === 'x-amzn-errortype' ? type : undefined));

describe('Bedrock errors', () => {
  it('each documented type maps to what Colloquy answers and whether it is retried', () => {
    const cases: [number, string, number, string, boolean][] = [
      [403, 'AccessDeniedException', 502, 'upstream_permission_denied', false],
      [403, 'UnrecognizedClientException', 502, 'upstream_auth_failed', false],
      [403, 'ExpiredTokenException', 502, 'upstream_auth_failed', false],
      [429, 'ThrottlingException', 429, 'upstream_rate_limited', true],
      [400, 'ValidationException', 400, 'upstream_invalid_request', false],
      [404, 'ResourceNotFoundException', 404, 'model_not_found', false],
      [429, 'ModelNotReadyException', 503, 'upstream_unavailable', true],
      [503, 'ServiceUnavailableException', 503, 'upstream_unavailable', true],
      [408, 'ModelTimeoutException', 504, 'upstream_timeout', true],
      [500, 'InternalServerException', 502, 'upstream_error', true],
      [424, 'ModelErrorException', 502, 'upstream_error', true],
    ];
    for (const [status, type, expected, code, retryable] of cases) {
      const err = answer(
        status,
        { message: `about ${type}` },
        `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
      );
      assert.equal(err.details.status, expected, type);
      assert.equal(err.details.code, code, type);
      assert.equal(err.retryable, retryable, type);
      assert.match(err.message, new RegExp(`about ${type}`));
    }
  });

  it('the type from the body when the header is missing; Message in capitals; a prompt too long', () => {
    const err = answer(400, {
      __type: 'com.amazon.coral.validate#ValidationException',
      Message: 'Input is too long for requested model.',
    });
    assert.equal(err.details.code, 'context_length_exceeded');
    assert.equal(err.message, 'Input is too long for requested model.');
  });

  it("a proxy's bare status still maps by Bedrock's documented status", () => {
    assert.equal(map(429, 'slow down', () => undefined).retryable, true);
    assert.equal(map(403, '', () => undefined).details.code, 'upstream_permission_denied');
    assert.equal(map(401, '', () => undefined).details.code, 'upstream_auth_failed');
    assert.equal(map(502, '<html>bad gateway</html>', () => undefined).retryable, true);
  });
});
