import { useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type Res } from '../api/client';

type Verdicts = Res<'/api/guardrails/verdicts', 'get'>;

/**
 * The usage page's guardrail section (admins; issue 22): how many verdicts each guardrail gave over the
 * selected range, by stage and action (block, redact, refer, error, …). A section of its own, so the page's
 * range and filters stay where they are.
 */
export function GuardrailVerdicts({ from, to, refresh }: { from: string; to: string; refresh: number }) {
  const [verdicts, setVerdicts] = useState<Verdicts | null>(null);
  const [error, setError] = useState('');

  // biome-ignore lint/correctness/useExhaustiveDependencies: `refresh` is the reload trigger
  useEffect(() => {
    let stale = false;
    (api.get('/api/guardrails/verdicts', { from, to }) as Promise<Verdicts>).then(
      (v) => {
        if (stale) return;
        setVerdicts(v);
        setError('');
      },
      (err) => !stale && setError(errorText(err)),
    );
    return () => {
      stale = true;
    };
  }, [from, to, refresh]);

  return (
    <section aria-labelledby="verdicts-heading">
      <h2 id="verdicts-heading">Guardrail verdicts</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <p data-testid="verdicts-total">
        {verdicts === null
          ? 'Loading verdicts…'
          : `${verdicts.total} ${verdicts.total === 1 ? 'verdict' : 'verdicts'} from ${from} to ${to} (UTC).`}
      </p>
      {verdicts && verdicts.data.length > 0 && (
        <div className="scroll">
          <table>
            <caption className="sr-only">Guardrail verdicts by guardrail, stage and action</caption>
            <thead>
              <tr>
                <th scope="col">Guardrail</th>
                <th scope="col">Stage</th>
                <th scope="col">Action</th>
                <th scope="col">Verdicts</th>
              </tr>
            </thead>
            <tbody>
              {verdicts.data.map((v) => (
                <tr key={`${v.guardrail} ${v.stage} ${v.action}`}>
                  <th scope="row">{v.guardrail}</th>
                  <td>{v.stage}</td>
                  <td>{v.action}</td>
                  <td>{v.verdicts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
