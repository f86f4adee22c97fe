// What the admin pages' forms share: one outcome message at a time (the last action's, never an old error
// beside a later success), labelled selects, and a table's loading and empty rows.
import { type FormEvent, type ReactNode, useCallback, useEffect, useId, useRef, useState } from 'react';
import { errorText } from '../App';
import { api, type User } from '../api/client';

export type Outcome = { ok: boolean; text: string } | null;

/**
 * The outcome of the page's last action. `run` does an action and reports it (`done` says what happened);
 * it answers whether the action succeeded. `fail` reports an error (an API error or a sentence).
 */
export function useOutcome() {
  const [outcome, setOutcome] = useState<Outcome>(null);
  const fail = useCallback(
    (err: unknown) => setOutcome({ ok: false, text: typeof err === 'string' ? err : errorText(err) }),
    [],
  );
  const run = useCallback(
    async <T,>(action: () => Promise<T>, done: string | ((result: T) => string) | null) => {
      try {
        const result = await action();
        setOutcome(done === null ? null : { ok: true, text: typeof done === 'string' ? done : done(result) });
        return true;
      } catch (err) {
        fail(err);
        return false;
      }
    },
    [fail],
  );
  return { outcome, setOutcome, fail, run };
}

/** Every user, for the pages' user pickers (admins only: a plain user's request is refused). */
export function useUserList(enabled: boolean) {
  const [users, setUsers] = useState<User[]>([]);
  useEffect(() => {
    if (!enabled) return;
    api.users().then(
      (u) => setUsers(u.data),
      () => {},
    );
  }, [enabled]);
  return { users };
}

/** A success as a polite status, a failure as an alert. */
export function OutcomeMessage({ outcome }: { outcome: Outcome }) {
  if (!outcome) return null;
  return outcome.ok ? (
    <p className="notice" role="status">
      {outcome.text}
    </p>
  ) : (
    <p className="error" role="alert">
      {outcome.text}
    </p>
  );
}

/** A submitted form's fields (the browser's own submission prevented) and the form, to reset it. */
export function submitted(e: FormEvent<HTMLFormElement>) {
  e.preventDefault();
  const form = e.currentTarget;
  const data = new FormData(form);
  return { form, text: (name: string) => String(data.get(name) ?? '').trim() };
}

type Option = string | { value: string; label: string };

/**
 * A labelled select: uncontrolled with `name` (+ `defaultValue`), controlled with `value` and `onChange`.
 * `blank` adds a first option with an empty value and that text.
 */
export function Select(props: {
  label: ReactNode;
  ariaLabel?: string;
  name?: string;
  value?: string;
  defaultValue?: string;
  options: Option[];
  blank?: string;
  id?: string;
  disabled?: boolean;
  onChange?: (value: string) => void;
}) {
  const { label, ariaLabel, options, blank, onChange, ...rest } = props;
  return (
    <label>
      {label}
      <select aria-label={ariaLabel} {...rest} onChange={onChange && ((e) => onChange(e.target.value))}>
        {blank !== undefined && <option value="">{blank}</option>}
        {options.map((o) => {
          const { value, label: text } = typeof o === 'string' ? { value: o, label: o } : o;
          return (
            <option key={value} value={value}>
              {text}
            </option>
          );
        })}
      </select>
    </label>
  );
}

export const ROLES = ['user', 'admin'];

/**
 * The admin pages' table: headed columns (the first heads each row; with `actions`, a last one for its
 * buttons), cards at phone width (styles.css: `.cards` cells show their data-label) inside a scroller, and
 * the rows shown while `rows` loads (null) and when it is empty.
 */
export function AdminTable(props: {
  columns: string[];
  actions?: boolean;
  testId?: string;
  label?: string;
  rows: unknown[] | null;
  loading: string;
  empty?: string;
  children: ReactNode;
}) {
  const { columns, actions, rows, loading, empty } = props;
  return (
    <div className="scroll">
      <table className="cards" data-testid={props.testId} aria-label={props.label}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
            {actions && (
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {props.children}
          <TableStates
            rows={rows}
            columns={columns.length + (actions ? 1 : 0)}
            loading={loading}
            {...(empty ? { empty } : {})}
          />
        </tbody>
      </table>
    </div>
  );
}

/** The rows a table shows while its data loads (`rows` null) and when there is none. */
function TableStates(props: { rows: unknown[] | null; columns: number; loading: string; empty?: string }) {
  if (props.rows === null)
    return (
      <tr>
        <td colSpan={props.columns}>{props.loading}</td>
      </tr>
    );
  if (props.rows.length === 0 && props.empty)
    return (
      <tr>
        <td colSpan={props.columns}>{props.empty}</td>
      </tr>
    );
  return null;
}

/**
 * A modal form (the browser's <dialog>: focus moves into it and back, Escape closes it) naming what it acts
 * on in its title. `onSubmit` answers whether to close: a refused action keeps the dialog and its input.
 */
export function FormDialog(props: {
  title: string;
  submit: string;
  onSubmit: (e: FormEvent<HTMLFormElement>) => Promise<boolean>;
  onClose: () => void;
  children: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
  }, []);
  const titleId = useId();
  return (
    <dialog ref={ref} className="form-dialog" aria-labelledby={titleId} onClose={props.onClose}>
      <form
        className="stack"
        onSubmit={async (e) => {
          if (await props.onSubmit(e)) ref.current?.close();
        }}
      >
        <h2 id={titleId}>{props.title}</h2>
        {props.children}
        <div className="row">
          <button type="submit">{props.submit}</button>
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}
