import { hash, timingSafeEqual } from 'node:crypto';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { type Db, isUniqueViolation } from '../../db/database.js';
import { isWellFormedApiKey, looksLikeApiKey } from '../api-keys/key-format.js';
import type { ApiKeyStore, KeyOwner } from '../api-keys/store.js';
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

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Every master-key request shares it (nothing mutates a principal). */
const MASTER_KEY_PRINCIPAL: Principal = Object.freeze({
  userId: null,
  role: 'admin',
  via: 'master_key',
  apiKeyId: null,
});

/** The key owner's principal, built once per cache entry (a revoked or changed key is a new entry). */
function principalFor(owner: KeyOwner): Principal {
  if (owner.principal !== undefined) return owner.principal;
  const principal: Principal = {
    userId: owner.userId,
    role: owner.role,
    via: 'api_key',
    apiKeyId: owner.keyId,
    cacheResponses: owner.cacheResponses,
  };
  if (owner.allowedModels) principal.allowedModels = owner.allowedModels;
  // Open streams end when the key expires (CredentialWatch).
  if (owner.expiresAt) principal.expiresAt = Date.parse(owner.expiresAt);
  owner.principal = Object.freeze(principal);
  return owner.principal;
}

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
      /** Accounts whose address is still unconfirmed (`verification_pending_at`) cannot sign in. */
      requireEmailVerification?: boolean;
    },
  ) {
    this.#masterKeyDigest = deps.masterKey ? digest(deps.masterKey) : undefined;
  }

  /** `db`: a transaction, when the caller writes more with the account (its verification mail). */
  async createUser(
    input: {
      email: string;
      password: string;
      role: Role;
      displayName?: string | null;
      verificationPending?: boolean;
    },
    db?: Db,
  ) {
    assertPasswordAcceptable(input.password, input.email);
    try {
      return await this.deps.users.create(
        {
          email: input.email,
          passwordHash: await hashPassword(input.password),
          role: input.role,
          displayName: input.displayName ?? null,
          verificationPending: input.verificationPending ?? false,
        },
        db,
      );
    } catch (err) {
      if (isUniqueViolation(err))
        throw new AppError('conflict', 'a user with this email already exists', { param: 'email' });
      throw err;
    }
  }

  /**
   * One answer for an unknown email and a wrong password: nothing to enumerate. A disabled account is told
   * so only after its right password (a guesser learns nothing; its owner learns why they cannot sign in).
   */
  async login(email: string, password: string, ip: string): Promise<TokenPair> {
    const key = email.trim().toLowerCase();
    await this.deps.throttle.assertAllowed(key, ip);
    const user = await this.deps.users.findByEmail(key);
    const ok = user ? await verifyPassword(user.password_hash, password) : await verifyAgainstDummy(password);
    if (!user || !ok) {
      // The attempt was already counted by assertAllowed.
      throw new AppError('invalid_credentials', 'invalid email or password');
    }
    if (user.disabled_at)
      throw new AppError('account_disabled', 'this account is disabled; ask an administrator to enable it');
    await this.deps.throttle.recordSuccess(key, ip);
    // Said only to whoever knows the password: it reveals nothing to anyone else.
    if (user.verification_pending_at && this.deps.requireEmailVerification)
      throw new AppError(
        'email_not_verified',
        'confirm your email address first: follow the link in the mail sent at sign-up (or ask for a new one)',
      );
    const session = newId('rtf');
    return this.issueTokens(
      user.id,
      user.role,
      toPublicUser(user),
      await this.deps.refreshTokens.issue(user.id, session),
      session,
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
    return this.issueTokens(user.id, user.role, toPublicUser(user), result.token, result.familyId);
  }

  logout(refreshToken: string): Promise<void> {
    return this.deps.refreshTokens.revoke(refreshToken);
  }

  private async issueTokens(
    userId: string,
    role: Role,
    user: PublicUser,
    refreshToken: string,
    sessionId: string,
  ): Promise<TokenPair> {
    return {
      access_token: await this.deps.accessTokens.sign({ sub: userId, role, sid: sessionId }),
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
    return this.resolve(authorization);
  }

  /**
   * `authenticate` without a promise when none is needed: the master key and a cached API key (the hot path)
   * resolve synchronously, to a principal shared by their requests; anything else returns a promise. Throws
   * (synchronously) the 401 of a missing, malformed or unrecognised credential.
   */
  resolve(authorization: string | undefined): Principal | Promise<Principal> {
    const token = authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
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
    if (this.#masterKeyDigest && timingSafeEqual(tokenDigest, this.#masterKeyDigest))
      return MASTER_KEY_PRINCIPAL;
    if (looksLikeApiKey(token)) {
      if (!isWellFormedApiKey(token)) throw new AppError('invalid_api_key', 'invalid API key');
      const hash = tokenDigest.toString('hex');
      // Cached and used within the minute: no database, no promise, no new object.
      const owner = this.deps.apiKeys.peekUsable(hash);
      if (owner !== undefined && !this.deps.apiKeys.needsTouch(owner)) return principalFor(owner);
      return this.authenticateApiKey(hash);
    }
    if (token.split('.').length === 3) return this.authenticateJwt(token);
    throw new AppError('unauthorized', 'unrecognised credentials');
  }

  /** `hash` is hashApiKey(key) of a well-formed key, already computed by the caller. */
  private async authenticateApiKey(hash: string): Promise<Principal> {
    const owner = await this.deps.apiKeys.findUsable(hash);
    if (!owner) throw new AppError('invalid_api_key', 'invalid, expired or revoked API key');
    await this.deps.apiKeys.touch(owner);
    return principalFor(owner);
  }

  private async authenticateJwt(token: string): Promise<Principal> {
    const claims = await this.deps.accessTokens.verify(token);
    // The account is re-read so that disabling a user or changing a role takes effect at once.
    const [user, signedIn] = await Promise.all([
      this.deps.users.findById(claims.sub),
      claims.sid ? this.deps.refreshTokens.isSessionActive(claims.sid, claims.sub) : true,
    ]);
    if (!user || user.disabled_at) throw new AppError('invalid_token', 'access token is invalid');
    // Logout (or a new password elsewhere) ended the session: its access tokens end with it.
    if (!signedIn)
      throw new AppError('invalid_token', 'access token belongs to a session that was signed out');
    return {
      userId: user.id,
      role: user.role,
      via: 'jwt',
      apiKeyId: null,
      sessionId: claims.sid,
      expiresAt: claims.exp !== undefined ? claims.exp * 1000 : undefined,
    };
  }

  /**
   * Whether an authenticated principal may still act, read from the database (not the key cache): its key
   * not revoked nor expired, its user not disabled. Open streams are ended when this turns false.
   */
  async stillValid(principal: Principal): Promise<boolean> {
    if (principal.via === 'master_key') return true;
    if (principal.apiKeyId) return this.deps.apiKeys.isUsable(principal.apiKeyId);
    const user = principal.userId ? await this.deps.users.findById(principal.userId) : undefined;
    return Boolean(user && !user.disabled_at);
  }
}
