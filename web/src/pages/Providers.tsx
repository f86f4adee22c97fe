import { type FormEvent, useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type DeploymentHealth, type ProviderHealth } from '../api/client';

const REFRESH_MS = 3_000;

const ms = (v: number | null) => (v === null ? '—' : `${Math.round(v)} ms`);
const ratio = (d: DeploymentHealth) =>
  d.error_ratio === null ? '—' : `${(d.error_ratio * 100).toFixed(1)}%`;

/**
 * What the admin should think of a deployment: the breaker's state first (open or probing), then its
 * recent errors — a breaker stays closed until enough failures in a row, so a deployment failing every
 * request would otherwise read "healthy" meanwhile.
 */
function verdict(d: DeploymentHealth): { cls: string; text: string } {
  if (d.state === 'open') return { cls: 'state-open', text: 'failing (circuit open)' };
  if (d.state === 'half-open') return { cls: 'state-half-open', text: 'probing (circuit half-open)' };
  const ratio = d.error_ratio ?? 0;
  if (d.attempts > 0 && ratio >= 0.5)
    return { cls: 'state-open', text: `failing (${Math.round(ratio * 100)}% errors)` };
  if (ratio > 0) return { cls: 'state-half-open', text: `degraded (${Math.round(ratio * 100)}% errors)` };
  return d.attempts
    ? { cls: 'state-closed', text: 'healthy' }
    : { cls: 'state-closed', text: 'healthy (no recent traffic)' };
}

function StateBadge({ d }: { d: DeploymentHealth }) {
  const v = verdict(d);
  return (
    <span className={`badge ${v.cls}`} data-testid="circuit-state" data-state={d.state}>
      {v.text}
    </span>
  );
}

/** Routes and deployments with their live health, as the replica that answered sees them. */
export function ProvidersPage() {
  const [health, setHealth] = useState<ProviderHealth | null>(null);
  const [error, setError] = useState('');
  const [live, setLive] = useState(true);

  useEffect(() => {
    let stopped = false;
    const load = () =>
      api.providers().then(
        (h) => {
          if (stopped) return;
          setHealth(h);
          setError('');
        },
        (err) => !stopped && setError(errorText(err)),
      );
    void load();
    const timer = live ? setInterval(load, REFRESH_MS) : undefined;
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [live]);

  return (
    <section className="page">
      <h1>Providers</h1>
      <p className="muted">
        Routes and their deployments. Error ratio and latency cover the last{' '}
        {health ? Math.round(health.window_seconds / 60) : 5} minutes of upstream attempts made by{' '}
        <strong>this replica</strong>
        {health ? ` (${health.replica})` : ''}; other replicas keep their own figures.
      </p>
      <div className="row">
        <label className="inline">
          <input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} />
          Refresh every {REFRESH_MS / 1000} s
        </label>
        {health && (
          <span className="muted" aria-live="polite">
            Updated {new Date(health.generated_at).toLocaleTimeString()}
          </span>
        )}
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {health && health.routes.length === 0 && <p>No routes yet: no model has been called.</p>}
      {health?.routes.map((route) => (
        <div className="scroll" key={`${route.kind}:${route.name}`}>
          <table data-testid="route">
            <caption>
              <code>{route.name}</code>{' '}
              <span className="muted">
                {route.kind === 'alias' ? 'configured route' : 'direct model name'}
              </span>
            </caption>
            <thead>
              <tr>
                <th scope="col">Deployment</th>
                <th scope="col">Provider</th>
                <th scope="col">State</th>
                <th scope="col">Attempts</th>
                <th scope="col">Error ratio</th>
                <th scope="col">p50 / p95 latency</th>
                <th scope="col">p50 / p95 first token</th>
              </tr>
            </thead>
            <tbody>
              {route.deployments.map((d) => (
                <tr key={d.id} data-testid="deployment">
                  <th scope="row">
                    {d.model}
                    {route.kind === 'alias' && <span className="muted"> · priority {d.priority}</span>}
                  </th>
                  <td>{d.provider}</td>
                  <td>
                    <StateBadge d={d} />
                  </td>
                  <td>{d.attempts}</td>
                  <td data-testid="error-ratio">{ratio(d)}</td>
                  <td>
                    {ms(d.p50_latency_ms)} / {ms(d.p95_latency_ms)}
                  </td>
                  <td>
                    {ms(d.p50_ttft_ms)} / {ms(d.p95_ttft_ms)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
      <CacheInvalidation />
    </section>
  );
}

/** Drops cached responses by pattern (`POST /api/admin/cache/invalidate`): after a model or prompt change. */
function CacheInvalidation() {
  const [pattern, setPattern] = useState('responses:*');
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!confirm(`Drop every cached entry matching ${pattern}?`)) return;
    try {
      const r = await api.invalidateCache(pattern.trim());
      setOutcome({
        ok: true,
        text: `Removed ${r.removed} cached ${r.removed === 1 ? 'entry' : 'entries'}${r.complete ? '.' : ' (more may remain: run it again).'}`,
      });
    } catch (err) {
      setOutcome({ ok: false, text: errorText(err) });
    }
  };
  return (
    <form className="stack" onSubmit={submit} aria-labelledby="cache-title">
      <h2 id="cache-title">Response cache</h2>
      <p className="muted">
        A pattern of cached entries: <code>responses:*</code> for all,{' '}
        <code>responses:key:&lt;key id&gt;:*</code> or <code>responses:user:&lt;user id&gt;:*</code> for one
        key or user.
      </p>
      <div className="row">
        <label>
          Pattern
          <input value={pattern} onChange={(e) => setPattern(e.target.value)} required minLength={3} />
        </label>
        <button type="submit">Invalidate</button>
      </div>
      {outcome &&
        (outcome.ok ? (
          <p className="notice" role="status">
            {outcome.text}
          </p>
        ) : (
          <p className="error" role="alert">
            {outcome.text}
          </p>
        ))}
    </form>
  );
}
