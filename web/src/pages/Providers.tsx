import { useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type DeploymentHealth, type ProviderHealth } from '../api/client';

const REFRESH_MS = 3_000;

const ms = (v: number | null) => (v === null ? '—' : `${Math.round(v)} ms`);
const ratio = (d: DeploymentHealth) =>
  d.error_ratio === null ? '—' : `${(d.error_ratio * 100).toFixed(1)}%`;

const STATE_TEXT: Record<DeploymentHealth['state'], string> = {
  closed: 'healthy (circuit closed)',
  'half-open': 'probing (circuit half-open)',
  open: 'failing (circuit open)',
};

function StateBadge({ state }: { state: DeploymentHealth['state'] }) {
  return (
    <span className={`badge state-${state}`} data-testid="circuit-state">
      {STATE_TEXT[state]}
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
                    <StateBadge state={d.state} />
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
    </section>
  );
}
