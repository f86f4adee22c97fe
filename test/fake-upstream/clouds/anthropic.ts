import { readFileSync } from 'node:fs';
import { type FakeServer, sendJson, startServer } from './wire.js';

/** One of Anthropic's published examples (src/providers/anthropic/fixtures/README.md). */
const example = (name: string) =>
  JSON.parse(
    readFileSync(new URL(`../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8'),
  ) as unknown;

/**
 * A fake Anthropic API for `colloquy doctor`, written from Anthropic's references:
 * - List Models (https://docs.anthropic.com/en/api/models-list): `GET /v1/models?limit=…` with `x-api-key` and
 *   `anthropic-version` headers, answered `{data:[{type:"model", id, display_name, created_at}], has_more,
 *   first_id, last_id}` (the fixture models-page-1.json).
 * - Versioning (https://docs.anthropic.com/en/api/versioning): a request without `anthropic-version` is a 400
 *   invalid_request_error.
 * - Errors (https://docs.anthropic.com/en/api/errors): `{type:"error", error:{type, message}, request_id}`;
 *   401 authentication_error for a wrong key (the fixture error-authentication.json), 402 billing_error.
 * `billing: true` answers every authenticated call with the billing error.
 */
export async function startFakeAnthropic(options: {
  apiKey: string;
  billing?: boolean;
}): Promise<FakeServer> {
  const error = (type: string, message: string) => ({
    type: 'error',
    error: { type, message },
    request_id: 'req_011CfakeAnthropic',
  });
  return startServer((req, res) => {
    if (req.headers['x-api-key'] !== options.apiKey)
      return sendJson(res, 401, example('error-authentication.json'));
    if (!req.headers['anthropic-version'])
      return sendJson(res, 400, error('invalid_request_error', 'anthropic-version: header is required'));
    if (options.billing)
      return sendJson(
        res,
        402,
        error('billing_error', 'Your credit balance is too low to access the Anthropic API.'),
      );
    if (req.method === 'GET' && req.path === '/v1/models')
      return sendJson(res, 200, example('models-page-1.json'));
    return sendJson(res, 404, error('not_found_error', 'Not found'));
  });
}
