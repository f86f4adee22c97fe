import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { isAcceptableEmail } from '../../src/features/users/email.js';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  TEST_SECRET,
  type TestApp,
} from '../helpers/app.js';
import { DIALECTS, markSuiteRan } from '../helpers/databases.js';

const PASSWORD = 'a-long-enough-password';
const REDIS_URL = process.env.TEST_REDIS_URL;

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

/** Asserts the status and the `{error:{message,type,code,param}}` body; returns the error. */

const unique = (label: string) => `${label}-${randomBytes(5).toString('hex')}@example.com`;
/** A fresh client address, so each throttle test starts with clean per-address counts. */
const randomAddress = () => `10.${[...randomBytes(3)].join('.')}`;

const signup = (t: TestApp, payload: Record<string, unknown>) =>
  t.inject({ method: 'POST', url: '/api/auth/signup', payload });
const login = (t: TestApp, email: string, password: string, remoteAddress?: string) =>
  t.inject({
    method: 'POST',
    url: '/api/auth/login',
    payload: { email, password },
    ...(remoteAddress ? { remoteAddress } : {}),
  });
const refresh = (t: TestApp, token: string) =>
  t.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: token } });
const logout = (t: TestApp, token: string) =>
  t.inject({ method: 'POST', url: '/api/auth/logout', payload: { refresh_token: token } });
const getMe = (t: TestApp, token: string) =>
  t.inject({ method: 'GET', url: '/api/me', headers: bearer(token) });
const setDisabled = (t: TestApp, userId: string, disabled: boolean) =>
  t.inject({
    method: 'PATCH',
    url: `/api/users/${userId}`,
    headers: bearer(TEST_MASTER_KEY),
    payload: { disabled },
  });

interface SignOptions {
  secret?: string;
  alg?: string;
  issuer?: string;
  audience?: string;
  role?: string;
  typ?: string;
  iat?: number;
  exp?: number;
  nbf?: number;
}

/** Signs a token the way the server does, with any one rule changed through `options`. */
function signToken(sub: string, options: SignOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ role: options.role ?? 'user', typ: options.typ ?? 'access' })
    .setProtectedHeader({ alg: options.alg ?? 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuer(options.issuer ?? 'colloquy')
    .setAudience(options.audience ?? 'colloquy-api')
    .setIssuedAt(options.iat ?? now)
    .setExpirationTime(options.exp ?? now + 600);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function redisReady(redis: Redis) {
  if (redis.status === 'ready') return;
  await once(redis, 'ready', { signal: AbortSignal.timeout(5_000) });
}

for (const dialect of DIALECTS) {
  describe(`auth (${dialect})`, () => {
    describe('signup', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect });
      });
      after(() => t.close());

      it('makes the first account an admin and the next ones users, each signed in at once', async () => {
        const first = await signup(t, {
          email: 'first@example.com',
          password: PASSWORD,
          display_name: 'First',
        });
        assert.equal(first.statusCode, 201, first.body);
        const firstBody = first.json();
        assert.equal(firstBody.user.role, 'admin');
        assert.equal(firstBody.user.email, 'first@example.com');
        assert.equal(firstBody.user.display_name, 'First');
        assert.equal(firstBody.token_type, 'Bearer');
        assert.ok(firstBody.expires_in > 0);
        assert.equal(typeof firstBody.refresh_token, 'string');
        // The admin's token opens admin routes.
        const users = await t.inject({
          method: 'GET',
          url: '/api/users',
          headers: bearer(firstBody.access_token),
        });
        assert.equal(users.statusCode, 200, users.body);

        const second = await signup(t, { email: 'second@example.com', password: PASSWORD });
        assert.equal(second.statusCode, 201, second.body);
        const secondBody = second.json();
        assert.equal(secondBody.user.role, 'user');
        const me = await getMe(t, secondBody.access_token);
        assert.equal(me.statusCode, 200);
        assert.equal(me.json().role, 'user');
        assertError(
          await t.inject({ method: 'GET', url: '/api/users', headers: bearer(secondBody.access_token) }),
          403,
          'forbidden',
        );
        // The new account can log in with its password.
        assert.equal((await login(t, 'second@example.com', PASSWORD)).statusCode, 200);
      });

      it('refuses a `role: "admin"` field in the signup body, naming it, and creates nobody', async () => {
        const res = await signup(t, { email: 'sneaky@example.com', password: PASSWORD, role: 'admin' });
        const error = assertError(res, 400, 'validation_error', 'role');
        assert.match(error.message, /unknown field 'role'/);
        assertError(await login(t, 'sneaky@example.com', PASSWORD), 401, 'invalid_credentials');
        // Without it, the account is an ordinary user.
        const ok = await signup(t, { email: 'sneaky@example.com', password: PASSWORD });
        assert.equal(ok.statusCode, 201, ok.body);
        assert.equal(ok.json().user.role, 'user');
      });

      it('refuses a second account with the same email, whatever its case (409 conflict)', async () => {
        assert.equal((await signup(t, { email: 'dup@example.com', password: PASSWORD })).statusCode, 201);
        assertError(
          await signup(t, { email: 'dup@example.com', password: 'another-long-password' }),
          409,
          'conflict',
          'email',
        );
        assertError(
          await signup(t, { email: 'DUP@Example.com', password: 'another-long-password' }),
          409,
          'conflict',
          'email',
        );
        // The original account keeps its password.
        assert.equal((await login(t, 'dup@example.com', PASSWORD)).statusCode, 200);
        assertError(await login(t, 'dup@example.com', 'another-long-password'), 401, 'invalid_credentials');
      });

      it('refuses weak passwords with 400 weak_password and creates nothing', async () => {
        for (const password of ['short', 'aaaaaaaaaaaaaaa', 'ababababababab', 'weak@example.com']) {
          assertError(
            await signup(t, { email: 'weak@example.com', password }),
            400,
            'weak_password',
            'password',
          );
        }
        // Nothing was created: the email is still free.
        assert.equal((await signup(t, { email: 'weak@example.com', password: PASSWORD })).statusCode, 201);
      });

      it('rejects a malformed email with 400', async () => {
        assertError(await signup(t, { email: 'not-an-email', password: PASSWORD }), 400, 'validation_error');
      });

      it('accepts exactly the emails the CLI accepts (one validation for both)', async () => {
        const candidates = [
          'bad-email',
          'a@b',
          'two@@example.com',
          ' spaced@example.com',
          'ok.name+tag@example.co.uk',
          `${'x'.repeat(250)}@e.co`,
          'first.last@sub.example.org',
        ];
        for (const [i, email] of candidates.entries()) {
          const unique = email.replace(/@/, `${i}@`);
          const res = await signup(t, { email: unique, password: PASSWORD });
          assert.equal(res.statusCode === 201, isAcceptableEmail(unique), `${unique}: ${res.body}`);
        }
      });
    });

    describe('concurrent signups on an empty instance', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect });
      });
      after(() => t.close());

      it('make exactly one admin', async () => {
        const results = await Promise.all(
          Array.from({ length: 5 }, (_, i) =>
            signup(t, { email: `race-${i}@example.com`, password: PASSWORD }),
          ),
        );
        for (const res of results) assert.equal(res.statusCode, 201, res.body);
        const roles = results.map((res) => res.json().user.role as string);
        assert.equal(roles.filter((role) => role === 'admin').length, 1, `roles: ${roles.join(', ')}`);
        const listed = await t.inject({ method: 'GET', url: '/api/users', headers: bearer(TEST_MASTER_KEY) });
        const stored = (listed.json().data as { role: string }[]).map((u) => u.role);
        assert.equal(stored.length, 5);
        assert.equal(stored.filter((role) => role === 'admin').length, 1);
      });
    });

    describe('signup when ALLOW_SIGNUP=false', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect, env: { ALLOW_SIGNUP: 'false' } });
      });
      after(() => t.close());

      it('answers 403 signup_disabled and creates no account; admins can still create users', async () => {
        assertError(
          await signup(t, { email: 'closed@example.com', password: PASSWORD }),
          403,
          'signup_disabled',
        );
        assertError(await login(t, 'closed@example.com', PASSWORD), 401, 'invalid_credentials');
        const created = await createUser(t, 'closed@example.com');
        assert.equal((await getMe(t, created.accessToken)).statusCode, 200);
      });
    });

    describe('sessions and bearer tokens', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect });
      });
      after(() => t.close());

      it('logs in with the right password and the access token opens /api/me', async () => {
        const user = await createUser(t, 'login-ok@example.com');
        const res = await login(t, '  Login-OK@Example.com ', user.password);
        assert.equal(res.statusCode, 200, res.body);
        const body = res.json();
        assert.equal(body.user.id, user.id);
        assert.equal(body.token_type, 'Bearer');
        const me = await getMe(t, body.access_token);
        assert.equal(me.statusCode, 200);
        assert.equal(me.json().id, user.id);
        assert.equal(me.json().email, 'login-ok@example.com');
        assert.equal(me.json().password_hash, undefined);
      });

      it('gives a wrong password, an unknown email and a disabled account’s wrong password the identical 401; a disabled account’s right password 403 account_disabled', async () => {
        const user = await createUser(t, 'same-401@example.com');
        const disabled = await createUser(t, 'disabled-401@example.com');
        assert.equal((await setDisabled(t, disabled.id, true)).statusCode, 200);

        const wrongPassword = await login(t, user.email, 'not-the-right-password');
        const unknownEmail = await login(t, 'nobody-here@example.com', 'not-the-right-password');
        const disabledAccount = await login(t, disabled.email, 'not-the-right-password');
        for (const res of [wrongPassword, unknownEmail, disabledAccount])
          assertError(res, 401, 'invalid_credentials', null);
        // The right password learns the account is disabled (and nothing a guesser could use).
        assertError(await login(t, disabled.email, disabled.password), 403, 'account_disabled', null);
        assert.equal(unknownEmail.body, wrongPassword.body);
        assert.equal(disabledAccount.body, wrongPassword.body);
        assert.equal(unknownEmail.headers['content-type'], wrongPassword.headers['content-type']);
      });

      it('locks a disabled user out: no login, existing access token and refresh token refused', async () => {
        const user = await createUser(t, 'to-disable@example.com');
        assert.equal((await getMe(t, user.accessToken)).statusCode, 200);

        const res = await setDisabled(t, user.id, true);
        assert.equal(res.statusCode, 200);
        assert.equal(res.json().disabled, true);

        assertError(await getMe(t, user.accessToken), 401, 'invalid_token');
        assertError(await login(t, user.email, user.password), 403, 'account_disabled');
        assertError(await refresh(t, user.refreshToken), 401, 'invalid_token');

        // Re-enabled, the account can sign in again.
        assert.equal((await setDisabled(t, user.id, false)).statusCode, 200);
        const again = await login(t, user.email, user.password);
        assert.equal(again.statusCode, 200, again.body);
        assert.equal((await getMe(t, again.json().access_token)).statusCode, 200);
      });

      it('rotates refresh tokens: each refresh gives a new working pair and the old token stops working', async () => {
        const user = await createUser(t, 'rotate@example.com');
        const first = await refresh(t, user.refreshToken);
        assert.equal(first.statusCode, 200, first.body);
        const pair = first.json();
        assert.notEqual(pair.refresh_token, user.refreshToken);
        assert.equal(pair.user.id, user.id);
        assert.equal((await getMe(t, pair.access_token)).statusCode, 200);

        const second = await refresh(t, pair.refresh_token);
        assert.equal(second.statusCode, 200, second.body);
        assert.notEqual(second.json().refresh_token, pair.refresh_token);
      });

      it('revokes the whole family when a rotated refresh token is reused, leaving other logins alone', async () => {
        const user = await createUser(t, 'reuse@example.com');
        const otherSession = (await login(t, user.email, user.password)).json().refresh_token as string;

        const rotated = await refresh(t, user.refreshToken);
        assert.equal(rotated.statusCode, 200);
        const newToken = rotated.json().refresh_token as string;

        // Replaying the old token fails, and takes the token rotated from it down too.
        assertError(await refresh(t, user.refreshToken), 401, 'invalid_token');
        assertError(await refresh(t, newToken), 401, 'invalid_token');
        assertError(await refresh(t, user.refreshToken), 401, 'invalid_token');

        // A separate login is a separate family and keeps working.
        assert.equal((await refresh(t, otherSession)).statusCode, 200);
      });

      it('refuses unknown refresh tokens', async () => {
        assertError(await refresh(t, `rt_${randomBytes(32).toString('base64url')}`), 401, 'invalid_token');
        assertError(
          await t.inject({ method: 'POST', url: '/api/auth/refresh', payload: {} }),
          400,
          'validation_error',
        );
      });

      it('logout revokes the refresh token (and its rotations); logging out twice is harmless', async () => {
        const user = await createUser(t, 'logout@example.com');
        const rotated = (await refresh(t, user.refreshToken)).json().refresh_token as string;
        const res = await logout(t, rotated);
        assert.equal(res.statusCode, 204);
        assert.equal(res.body, '');
        assertError(await refresh(t, rotated), 401, 'invalid_token');
        assert.equal((await logout(t, rotated)).statusCode, 204);
        assert.equal((await logout(t, 'rt_never-issued')).statusCode, 204);
        // Logging in again starts a fresh session.
        assert.equal((await login(t, user.email, user.password)).statusCode, 200);
      });

      it('logout ends the access tokens of that session at once; other sessions keep working', async () => {
        const user = await createUser(t, unique('logout-access'));
        const other = (await login(t, user.email, user.password)).json() as { access_token: string };
        assert.equal((await getMe(t, user.accessToken)).statusCode, 200);
        // A token from a refresh belongs to the same session.
        const rotated = (await refresh(t, user.refreshToken)).json() as {
          access_token: string;
          refresh_token: string;
        };
        assert.equal((await getMe(t, rotated.access_token)).statusCode, 200);
        assert.equal((await logout(t, rotated.refresh_token)).statusCode, 204);
        for (const token of [user.accessToken, rotated.access_token]) {
          const res = await getMe(t, token);
          assertError(res, 401, 'invalid_token');
          assert.match(res.json().error.message, /signed out/);
        }
        assert.equal((await getMe(t, other.access_token)).statusCode, 200);
      });

      it('a reused refresh token ends the access tokens of its session too', async () => {
        const user = await createUser(t, unique('reuse-access'));
        const rotated = (await refresh(t, user.refreshToken)).json() as { access_token: string };
        assert.equal((await getMe(t, rotated.access_token)).statusCode, 200);
        assertError(await refresh(t, user.refreshToken), 401, 'invalid_token');
        assertError(await getMe(t, rotated.access_token), 401, 'invalid_token');
      });

      it('PATCH /api/me changes the password only with the current one, and signs other sessions out', async () => {
        const user = await createUser(t, 'change-pw@example.com');
        const other = (await login(t, user.email, user.password)).json() as { refresh_token: string };
        const newPassword = 'a-brand-new-passphrase';
        const patch = (payload: Record<string, unknown>) =>
          t.inject({ method: 'PATCH', url: '/api/me', headers: bearer(user.accessToken), payload });

        assertError(await patch({ password: newPassword }), 401, 'invalid_credentials', 'current_password');
        assertError(
          await patch({ password: newPassword, current_password: 'wrong-current-password' }),
          401,
          'invalid_credentials',
          'current_password',
        );
        assertError(
          await patch({ password: 'short', current_password: user.password }),
          400,
          'weak_password',
          'password',
        );
        // None of the refused attempts changed anything.
        assert.equal((await refresh(t, other.refresh_token)).statusCode, 200);
        const otherNow = (await login(t, user.email, user.password)).json() as {
          refresh_token: string;
          access_token: string;
        };

        const ok = await patch({ password: newPassword, current_password: user.password });
        assert.equal(ok.statusCode, 200, ok.body);
        assert.equal(ok.json().id, user.id);

        assertError(await refresh(t, otherNow.refresh_token), 401, 'invalid_token');
        assertError(await getMe(t, otherNow.access_token), 401, 'invalid_token');
        // The session that changed the password stays signed in.
        assert.equal((await getMe(t, user.accessToken)).statusCode, 200);
        assert.equal((await refresh(t, user.refreshToken)).statusCode, 200);
        assertError(await login(t, user.email, user.password), 401, 'invalid_credentials');
        assert.equal((await login(t, user.email, newPassword)).statusCode, 200);
      });

      it('PATCH /api/me changes the display name without a password', async () => {
        const user = await createUser(t, 'rename@example.com');
        const res = await t.inject({
          method: 'PATCH',
          url: '/api/me',
          headers: bearer(user.accessToken),
          payload: { display_name: 'Renamed' },
        });
        assert.equal(res.statusCode, 200, res.body);
        assert.equal((await getMe(t, user.accessToken)).json().display_name, 'Renamed');
        assert.equal((await login(t, user.email, user.password)).statusCode, 200);
      });

      describe('access token rules', () => {
        let userId: string;
        let email: string;
        before(async () => {
          const user = await createUser(t, 'jwt-rules@example.com');
          userId = user.id;
          email = user.email;
        });

        it('accepts a token signed exactly like the server signs (control for the cases below)', async () => {
          const res = await getMe(t, await signToken(userId));
          assert.equal(res.statusCode, 200, res.body);
          assert.equal(res.json().email, email);
        });

        it('refuses an expired token', async () => {
          const now = Math.floor(Date.now() / 1000);
          const error = assertError(
            await getMe(t, await signToken(userId, { iat: now - 7200, exp: now - 3600 })),
            401,
            'invalid_token',
          );
          assert.match(error.message, /expired/);
        });

        it('refuses a token whose payload was altered (role escalated)', async () => {
          const [header, , signature] = (await signToken(userId)).split('.');
          const now = Math.floor(Date.now() / 1000);
          const payload = b64url({
            role: 'admin',
            typ: 'access',
            sub: userId,
            iss: 'colloquy',
            aud: 'colloquy-api',
            iat: now,
            exp: now + 600,
          });
          const forged = `${header}.${payload}.${signature}`;
          assertError(await getMe(t, forged), 401, 'invalid_token');
          assertError(
            await t.inject({ method: 'GET', url: '/api/users', headers: bearer(forged) }),
            401,
            'invalid_token',
          );
        });

        it('refuses a token whose signature was altered', async () => {
          const [header, payload, signature] = (await signToken(userId)).split('.') as [
            string,
            string,
            string,
          ];
          // Change a character in the middle: the last one may only carry padding bits.
          const i = 10;
          const flipped = signature[i] === 'A' ? 'B' : 'A';
          const forged = `${header}.${payload}.${signature.slice(0, i)}${flipped}${signature.slice(i + 1)}`;
          assertError(await getMe(t, forged), 401, 'invalid_token');
        });

        it('refuses an unsigned `alg: none` token', async () => {
          const now = Math.floor(Date.now() / 1000);
          const claims = {
            sub: userId,
            role: 'admin',
            typ: 'access',
            iss: 'colloquy',
            aud: 'colloquy-api',
            iat: now,
            exp: now + 600,
          };
          for (const header of [{ alg: 'none' }, { alg: 'none', typ: 'JWT' }, { alg: 'None' }]) {
            const token = `${b64url(header)}.${b64url(claims)}.`;
            assertError(await getMe(t, token), 401, 'invalid_token');
          }
        });

        it('refuses a token signed with another secret', async () => {
          const token = await signToken(userId, { secret: 'another-secret-key-that-is-long-enough-987654' });
          assertError(await getMe(t, token), 401, 'invalid_token');
        });

        it('refuses a token for another audience or issuer', async () => {
          assertError(
            await getMe(t, await signToken(userId, { audience: 'some-other-api' })),
            401,
            'invalid_token',
          );
          assertError(
            await getMe(t, await signToken(userId, { issuer: 'someone-else' })),
            401,
            'invalid_token',
          );
        });

        it('refuses a token that is not valid yet (nbf in the future)', async () => {
          const now = Math.floor(Date.now() / 1000);
          assertError(await getMe(t, await signToken(userId, { nbf: now + 3600 })), 401, 'invalid_token');
        });

        it('refuses HS512 even with the right secret (the algorithm is pinned to HS256)', async () => {
          assertError(await getMe(t, await signToken(userId, { alg: 'HS512' })), 401, 'invalid_token');
          assertError(await getMe(t, await signToken(userId, { alg: 'HS384' })), 401, 'invalid_token');
        });

        it('refuses tokens that are not access tokens or name no existing user', async () => {
          assertError(await getMe(t, await signToken(userId, { typ: 'refresh' })), 401, 'invalid_token');
          assertError(await getMe(t, await signToken(userId, { role: 'root' })), 401, 'invalid_token');
          assertError(await getMe(t, await signToken('usr_does_not_exist')), 401, 'invalid_token');
        });

        it('refuses a refresh token used as a bearer token', async () => {
          const user = await createUser(t, 'refresh-as-bearer@example.com');
          const res = await getMe(t, user.refreshToken);
          assert.equal(res.statusCode, 401, res.body);
          assert.equal((res.json() as ErrorBody).error.type, 'authentication_error');
          // ...and the refresh token itself still works for what it is for.
          assert.equal((await refresh(t, user.refreshToken)).statusCode, 200);
        });

        it('answers 401 unauthorized to a missing or malformed Authorization header', async () => {
          assertError(await t.inject({ method: 'GET', url: '/api/me' }), 401, 'unauthorized');
          const token = await signToken(userId);
          for (const authorization of [
            '',
            'Bearer',
            'Bearer ',
            `Basic ${token}`,
            token,
            `Bearer ${token} extra`,
            'Token abc',
          ]) {
            assertError(
              await t.inject({ method: 'GET', url: '/api/me', headers: { authorization } }),
              401,
              'unauthorized',
            );
          }
          assertError(await getMe(t, 'not-a-token-at-all'), 401, 'unauthorized');
        });

        it('gives the master key admin rights (but no user account)', async () => {
          const users = await t.inject({
            method: 'GET',
            url: '/api/users',
            headers: bearer(TEST_MASTER_KEY),
          });
          assert.equal(users.statusCode, 200, users.body);
          assert.ok((users.json().data as { email: string }[]).some((u) => u.email === email));
          const created = await t.inject({
            method: 'POST',
            url: '/api/users',
            headers: bearer(TEST_MASTER_KEY),
            payload: { email: 'made-by-master@example.com', password: PASSWORD, role: 'admin' },
          });
          assert.equal(created.statusCode, 201, created.body);
          assert.equal(created.json().role, 'admin');
          assertError(await getMe(t, TEST_MASTER_KEY), 400, 'invalid_request');
          // A near miss of the master key is nothing.
          assertError(await getMe(t, `${TEST_MASTER_KEY}x`), 401, 'unauthorized');
        });
      });
    });

    describe('login throttling (LOGIN_MAX_FAILURES=3)', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect, env: { LOGIN_MAX_FAILURES: '3' } });
      });
      after(() => t.close());

      it('answers 429 with Retry-After after 3 failures, even to the right password', async () => {
        const user = await createUser(t, 'throttled@example.com');
        const address = randomAddress();
        for (let i = 0; i < 3; i++) {
          assertError(await login(t, user.email, 'wrong-password-here', address), 401, 'invalid_credentials');
        }
        const blocked = await login(t, user.email, user.password, address);
        const error = assertError(blocked, 429, 'too_many_login_attempts');
        assert.equal(error.type, 'rate_limit_error');
        const retryAfter = Number(blocked.headers['retry-after']);
        assert.ok(
          Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 900,
          `retry-after ${retryAfter}`,
        );
        // Still blocked on the next try: the right password does not lift the block.
        assertError(await login(t, user.email, user.password, address), 429, 'too_many_login_attempts');

        // The block is per account and address: the same account elsewhere, or another account here, still works.
        assert.equal((await login(t, user.email, user.password, randomAddress())).statusCode, 200);
        const other = await createUser(t, 'not-throttled@example.com');
        assert.equal((await login(t, other.email, other.password, address)).statusCode, 200);
      });

      it('throttles unknown emails exactly like known ones', async () => {
        const user = await createUser(t, 'known-throttle@example.com');
        const address = randomAddress();
        const known: LightMyRequestResponse[] = [];
        const unknown: LightMyRequestResponse[] = [];
        for (let i = 0; i < 4; i++) {
          known.push(await login(t, user.email, 'wrong-password-here', address));
          unknown.push(await login(t, 'ghost-throttle@example.com', 'wrong-password-here', address));
        }
        for (let i = 0; i < 3; i++) {
          assertError(known[i]!, 401, 'invalid_credentials');
          assert.equal(unknown[i]!.body, known[i]!.body);
        }
        const a = assertError(known[3]!, 429, 'too_many_login_attempts');
        const b = assertError(unknown[3]!, 429, 'too_many_login_attempts');
        assert.deepEqual({ ...b, message: '' }, { ...a, message: '' });
        assert.ok(unknown[3]!.headers['retry-after']);
      });

      it('lets no more than 3 parallel guesses through to the password check', async () => {
        const user = await createUser(t, 'parallel-guesses@example.com');
        const address = randomAddress();
        const results = await Promise.all(
          Array.from({ length: 20 }, () => login(t, user.email, 'wrong-password-here', address)),
        );
        const statuses = results.map((res) => res.statusCode);
        assert.equal(statuses.filter((s) => s === 401).length, 3, `statuses: ${statuses.join(',')}`);
        assert.equal(statuses.filter((s) => s === 429).length, 17, `statuses: ${statuses.join(',')}`);
        assertError(await login(t, user.email, user.password, address), 429, 'too_many_login_attempts');
      });

      it('counts failures since the last success only', async () => {
        const user = await createUser(t, 'reset-throttle@example.com');
        const address = randomAddress();
        for (let i = 0; i < 2; i++) await login(t, user.email, 'wrong-password-here', address);
        assert.equal((await login(t, user.email, user.password, address)).statusCode, 200);
        for (let i = 0; i < 2; i++) {
          assertError(await login(t, user.email, 'wrong-password-here', address), 401, 'invalid_credentials');
        }
        assert.equal((await login(t, user.email, user.password, address)).statusCode, 200);
      });
    });

    it('logout on one replica ends the session access tokens on the other', {
      skip: REDIS_URL ? false : 'set TEST_REDIS_URL to run',
    }, async () => {
      markSuiteRan('redis');
      const one = await startTestApp({ dialect, env: { REDIS_URL: REDIS_URL! } });
      const two = await startTestApp({
        dialect,
        testDb: one.testDb,
        migrate: false,
        env: { REDIS_URL: REDIS_URL! },
      }).catch(async (err) => {
        await one.close();
        throw err;
      });
      try {
        await Promise.all([redisReady(one.redis!), redisReady(two.redis!)]);
        const user = await createUser(one, unique('replica-logout'));
        // Replica two has just seen the session signed in (and remembers it).
        assert.equal((await getMe(two, user.accessToken)).statusCode, 200);
        assert.equal((await logout(one, user.refreshToken)).statusCode, 204);
        let status = 0;
        for (let i = 0; i < 100 && status !== 401; i++) {
          status = (await getMe(two, user.accessToken)).statusCode;
          if (status !== 401) await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(status, 401, 'replica two refuses the signed-out session');
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    });

    it('shares login failure counts between two app instances through Redis', {
      skip: REDIS_URL ? false : 'set TEST_REDIS_URL to run',
    }, async () => {
      markSuiteRan('redis');
      const env = { REDIS_URL: REDIS_URL!, LOGIN_MAX_FAILURES: '3', LOGIN_WINDOW_SECONDS: '120' };
      const one = await startTestApp({ dialect, env });
      const two = await startTestApp({ dialect, env }).catch(async (err) => {
        await one.close();
        throw err;
      });
      try {
        await Promise.all([redisReady(one.redis!), redisReady(two.redis!)]);
        // Unique per run: the counts live in Redis, outside this test's databases.
        const email = unique('shared-throttle');
        const address = randomAddress();
        await createUser(one, email);
        await createUser(two, email);

        assertError(await login(one, email, 'wrong-password-here', address), 401, 'invalid_credentials');
        assertError(await login(two, email, 'wrong-password-here', address), 401, 'invalid_credentials');
        assertError(await login(one, email, 'wrong-password-here', address), 401, 'invalid_credentials');

        // Neither instance saw 3 failures alone, yet both refuse the right password now.
        const blockedTwo = await login(two, email, PASSWORD, address);
        assertError(blockedTwo, 429, 'too_many_login_attempts');
        assert.ok(Number(blockedTwo.headers['retry-after']) >= 1);
        assertError(await login(one, email, PASSWORD, address), 429, 'too_many_login_attempts');

        // An unknown email is throttled across instances the same way.
        const ghost = unique('shared-ghost');
        for (const app of [one, two, one]) {
          assertError(await login(app, ghost, 'wrong-password-here', address), 401, 'invalid_credentials');
        }
        assertError(await login(two, ghost, 'wrong-password-here', address), 429, 'too_many_login_attempts');

        // Parallel guesses spread over both instances are counted atomically too.
        const target = unique('shared-parallel');
        const spread = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            login(i % 2 ? one : two, target, 'wrong-password-here', address),
          ),
        );
        const statuses = spread.map((res) => res.statusCode);
        assert.equal(statuses.filter((s) => s === 401).length, 3, `statuses: ${statuses.join(',')}`);
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    });
  });
}
