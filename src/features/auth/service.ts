import { hash, timingSafeEqual } from 'node:crypto';
import { AppError } from '../../core/errors.js';
import { isUniqueViolation } from '../../db/database.js';
import { isWellFormedApiKey, looksLikeApiKey } from '../api-keys/key-format.js';
import type { ApiKeyStore } from '../api-keys/store.js';
import { type PublicUser, type Role, toPublicUser, type UserStore } from '../users/store.js';
import type { AccessTokens } from './access-tokens.js';
import type { LoginThrottle } from './login-throttle.js';
import { assertPasswordAcceptable, hashPassword, verifyAgainstDummy, verifyPassword } from './passwords.js';
import type { Principal } from './principal.js';
import type { RefreshTokenStore } from './refresh-tokens.js';

export interface TokenPair {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  user: PublicUser;
}

// Every authenticated request hashes its credential once: the one-shot hash() skips the Hash object that
// createHash() builds (~1 % of a request's CPU in a profile).
const digest = (value: string) => hash('sha256', value, 'buffer');

export class AuthService {
  readonly #masterKeyDigest: Buffer | undefined;

  constructor(
    private readonly deps: {
      users: UserStore;
      apiKeys: ApiKeyStore;
      refreshTokens: RefreshTokenStore;
      accessTokens: AccessTokens;
      throttle: LoginThrottle;
      masterKey: string | undefined;
    },
  ) {
    this.#masterKeyDigest = deps.masterKey ? digest(deps.masterKey) : undefined;
  }

  async createUser(input: { email: string; password: string; role: Role; displayName?: string | null }) {
    assertPasswordAcceptable(input.password, input.email);
    try {
      return await this.deps.users.create({
        email: input.email,
        passwordHash: await hashPassword(input.password),
        role: input.role,
        displayName: input.displayName ?? null,
      });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new AppError('conflict', 'a user with this email already exists', { param: 'email' });
      throw err;
    }
  }

  /** One answer for an unknown email, a wrong password and a disabled account: nothing to enumerate. */
  async login(email: string, password: string, ip: string): Promise<TokenPair> {
    const key = email.trim().toLowerCase();
    await this.deps.throttle.assertAllowed(key, ip);
    const user = await this.deps.users.findByEmail(key);
    const ok = user ? await verifyPassword(user.password_hash, password) : await verifyAgainstDummy(password);
    if (!user || !ok || user.disabled_at) {
      // The attempt was already counted by assertAllowed.
      throw new AppError('invalid_credentials', 'invalid email or password');
    }
    await this.deps.throttle.recordSuccess(key, ip);
    return this.issueTokens(
      user.id,
      user.role,
      toPublicUser(user),
      await this.deps.refreshTokens.issue(user.id),
    );
  }

  async refresh(refreshToken: string): Promise<TokenPair> {
    const result = await this.deps.refreshTokens.rotate(refreshToken);
    if (!result.ok) {
      const message =
        result.reason === 'expired'
          ? 'refresh token has expired'
          : 'refresh token is invalid or was already used';
      throw new AppError('invalid_token', message);
    }
    const user = await this.deps.users.findById(result.userId);
    if (!user || user.disabled_at) {
      await this.deps.refreshTokens.revokeAllForUser(result.userId);
      throw new AppError('invalid_token', 'refresh token is invalid or was already used');
    }
    return this.issueTokens(user.id, user.role, toPublicUser(user), result.token);
  }

  logout(refreshToken: string): Promise<void> {
    return this.deps.refreshTokens.revoke(refreshToken);
  }

  private async issueTokens(
    userId: string,
    role: Role,
    user: PublicUser,
    refreshToken: string,
  ): Promise<TokenPair> {
    return {
      access_token: await this.deps.accessTokens.sign({ sub: userId, role }),
      token_type: 'Bearer',
      expires_in: this.deps.accessTokens.ttlSeconds,
      refresh_token: refreshToken,
      user,
    };
  }

  /** The user was disabled or changed role: their API keys are checked against the database again at once. */
  forgetUser(userId: string): Promise<void> {
    return this.deps.apiKeys.forgetUser(userId);
  }

  /** Resolves `Authorization: Bearer <jwt | api key | master key>`; throws 401 on anything else. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (!token) {
      throw new AppError(
        'unauthorized',
        authorization
          ? 'malformed Authorization header; expected "Bearer <token>"'
          : 'missing credentials: send Authorization: Bearer <token>',
      );
    }
    // One SHA-256 serves both checks: an API key's stored hash is the same digest, in hex.
    const tokenDigest = digest(token);
    if (this.#masterKeyDigest && timingSafeEqual(tokenDigest, this.#masterKeyDigest)) {
      return { userId: null, role: 'admin', via: 'master_key', apiKeyId: null };
    }
    if (looksLikeApiKey(token)) return this.authenticateApiKey(token, tokenDigest.toString('hex'));
    if (token.split('.').length === 3) return this.authenticateJwt(token);
    throw new AppError('unauthorized', 'unrecognised credentials');
  }

  /** `hash` is hashApiKey(key), already computed by the caller. */
  private async authenticateApiKey(key: string, hash: string): Promise<Principal> {
    if (!isWellFormedApiKey(key)) throw new AppError('invalid_api_key', 'invalid API key');
    const owner = await this.deps.apiKeys.findUsable(hash);
    if (!owner) throw new AppError('invalid_api_key', 'invalid, expired or revoked API key');
    await this.deps.apiKeys.touch(owner);
    return {
      userId: owner.userId,
      role: owner.role,
      via: 'api_key',
      apiKeyId: owner.keyId,
      cacheResponses: owner.cacheResponses,
    };
  }

  private async authenticateJwt(token: string): Promise<Principal> {
    const claims = await this.deps.accessTokens.verify(token);
    // The account is re-read so that disabling a user or changing a role takes effect at once.
    const user = await this.deps.users.findById(claims.sub);
    if (!user || user.disabled_at) throw new AppError('invalid_token', 'access token is invalid');
    return { userId: user.id, role: user.role, via: 'jwt', apiKeyId: null };
  }
}
