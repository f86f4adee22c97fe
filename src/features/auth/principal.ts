import type { Role } from '../users/store.js';

/** Who is calling. `userId` is null only for the master key, which acts as an admin without an account. */
export interface Principal {
  userId: string | null;
  role: Role;
  via: 'jwt' | 'api_key' | 'master_key';
  apiKeyId: string | null;
  /** The key opted every request into the response cache. */
  cacheResponses?: boolean;
}

export const isAdmin = (principal: Principal) => principal.role === 'admin';
