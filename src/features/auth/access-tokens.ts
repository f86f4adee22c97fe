import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { AppError } from '../../core/errors.js';

export const TOKEN_ISSUER = 'colloquy';
export const TOKEN_AUDIENCE = 'colloquy-api';

export interface AccessClaims {
  sub: string;
  role: 'admin' | 'user';
  /** The login session (refresh-token family) the token belongs to: signing out ends it. */
  sid?: string | undefined;
  /** Expiry, seconds since the epoch (set by verify). */
  exp?: number;
}

/** HS256 access tokens. The algorithm is pinned on both sides: `alg: none` or RS/ES confusion never verify. */
export class AccessTokens {
  readonly #key: Uint8Array;

  constructor(
    secret: string,
    readonly ttlSeconds: number,
  ) {
    this.#key = new TextEncoder().encode(secret);
  }

  sign(claims: AccessClaims): Promise<string> {
    return new SignJWT({ role: claims.role, typ: 'access', ...(claims.sid ? { sid: claims.sid } : {}) })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(claims.sub)
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.#key);
  }

  async verify(token: string): Promise<AccessClaims> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ['HS256'],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
        requiredClaims: ['sub', 'exp', 'iat'],
      });
      if (payload.typ !== 'access' || (payload.role !== 'admin' && payload.role !== 'user')) {
        throw new AppError('invalid_token', 'token is not an access token');
      }
      // Tokens signed before sessions were checked have no `sid`: they still work until they expire.
      const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
      return { sub: payload.sub!, role: payload.role, sid, exp: payload.exp };
    } catch (err) {
      if (err instanceof AppError) throw err;
      const expired = err instanceof joseErrors.JWTExpired;
      throw new AppError('invalid_token', expired ? 'access token has expired' : 'access token is invalid');
    }
  }
}
