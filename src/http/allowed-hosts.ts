import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../core/errors.js';

/**
 * ALLOWED_HOSTS: requests naming another host (Host header, or X-Forwarded-Host from a trusted proxy) get
 * 400 `host_not_allowed`, so links built from the Host (password mails, OAuth redirects) cannot be pointed
 * at an attacker's domain and DNS rebinding reaches nothing. `*.example.com` allows any subdomain. Health
 * and metrics stay reachable under any name: probes and scrapers address a pod by its IP.
 */
export function hostAllowList(allowed: string[]) {
  const exact = new Set(allowed.filter((h) => !h.startsWith('*.')));
  const suffixes = allowed.filter((h) => h.startsWith('*.')).map((h) => h.slice(1));
  const allows = (host: string) =>
    exact.has(host) || suffixes.some((s) => host.endsWith(s) && host.length > s.length);
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const path = request.url;
    if (path === '/metrics' || path === '/health' || path.startsWith('/health/')) return;
    // request.hostname has no port; an IPv6 literal keeps its brackets.
    const host = (request.hostname ?? '').toLowerCase().replace(/\.$/, '');
    if (!allows(host))
      throw new AppError(
        'host_not_allowed',
        `this service does not answer to the host "${host.slice(0, 100)}"`,
      );
  };
}
