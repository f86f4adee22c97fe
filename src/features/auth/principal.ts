import type { Role } from '../users/store.js';

/** Who is calling. `userId` is null only for the master key, which acts as an admin without an account. */
export interface Principal {
  userId: string | null;
  role: Role;
  via: 'jwt' | 'api_key' | 'master_key';
  apiKeyId: string | null;
  /** The login session of an access token (absent for keys and older tokens). */
  sessionId?: string | undefined;
  /** The key opted every request into the response cache. */
  cacheResponses?: boolean;
  /** An API key restricted to these model names (absent or null: every model). */
  allowedModels?: string[] | null | undefined;
  /** When the credential stops working on its own (epoch ms): an access token's or a key's expiry. */
  expiresAt?: number | undefined;
}

export const isAdmin = (principal: Principal) => principal.role === 'admin';
