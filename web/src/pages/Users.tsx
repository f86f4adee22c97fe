import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { api, type User } from '../api/client';
import { AdminTable, FormDialog, OutcomeMessage, ROLES, Select, submitted, useOutcome } from './admin-form';
import { fmt } from './Keys';

/** The server's rule (src/features/auth/passwords.ts): the form refuses what the server would. */
const PASSWORD_MIN_LENGTH = 10;

export function UsersPage({ self }: { self: User }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const { outcome, fail, run } = useOutcome();
  const load = useCallback(() => api.users().then((u) => setUsers(u.data), fail), [fail]);
  useEffect(() => void load(), [load]);
  // Invitations are mailed: offered only when the server has SMTP (GET /api/auth/options says so).
  const [canInvite, setCanInvite] = useState(false);
  // With mail, a password reset mails the user a link; without, the admin sets the new password here.
  const [canMail, setCanMail] = useState(false);
  const [resetting, setResetting] = useState<User | null>(null);
  useEffect(() => {
    api.authOptions().then(
      (o) => {
        setCanInvite(o.invitations);
        setCanMail(o.password_reset);
      },
      () => setCanInvite(false),
    );
  }, []);

  const remove = async (u: User) => {
    if (
      !confirm(
        `Delete ${u.email}? Their API keys and sessions stop at once; their conversations, assistants and files are deleted. Usage records stay for accounting. This cannot be undone.`,
      )
    )
      return;
    await run(
      () => api.deleteUser(u.id),
      (d) =>
        `Deleted ${d.email}: ${d.removed.conversations} conversations, ${d.removed.assistants} assistants and ${d.removed.files} files removed; ${d.kept}.`,
    );
    await load();
  };

  const reset = async (u: User) => {
    if (!canMail) {
      setResetting(u);
      return;
    }
    if (!confirm(`Mail ${u.email} a link to set a new password?`)) return;
    await run(() => api.resetPassword(u.id, {}), `A password-reset link is mailed to ${u.email}.`);
  };

  const setPassword = async (e: FormEvent<HTMLFormElement>) => {
    const { form } = submitted(e);
    const u = resetting;
    if (!u) return true;
    return run(
      () => api.resetPassword(u.id, { password: String(new FormData(form).get('password')) }),
      `${u.email} has a new password; their sessions are signed out.`,
    );
  };

  const invite = async (e: FormEvent<HTMLFormElement>) => {
    const { form, text } = submitted(e);
    const ok = await run(
      () => api.invite({ email: text('email'), role: text('role') === 'admin' ? 'admin' : 'user' }),
      (sent) =>
        `Invitation mailed to ${sent.email} (${sent.role}); the link is valid until ${fmt(sent.expires_at)}.`,
    );
    if (ok) form.reset();
  };

  const create = async (e: FormEvent<HTMLFormElement>) => {
    const { form, text } = submitted(e);
    const email = text('email');
    const created = await run(
      () =>
        api.createUser({
          email,
          password: String(new FormData(form).get('password')),
          role: text('role') === 'admin' ? 'admin' : 'user',
        }),
      `Created ${email}.`,
    );
    if (!created) return;
    form.reset();
    await load();
  };

  const update = async (u: User, body: { role?: 'admin' | 'user'; disabled?: boolean }) => {
    const question =
      body.role !== undefined
        ? `Make ${u.email} ${body.role === 'admin' ? 'an administrator' : 'a plain user'}?`
        : body.disabled
          ? `Disable ${u.email}? They are signed out at once and their API keys stop working.`
          : `Enable ${u.email} again?`;
    if (!confirm(question)) {
      await load(); // the role select shows the stored role again
      return;
    }
    await run(
      () => api.updateUser(u.id, body),
      (updated) =>
        body.role !== undefined
          ? `${u.email} is now ${updated.role === 'admin' ? 'an administrator' : 'a plain user'}.`
          : `${u.email} is ${updated.disabled ? 'disabled' : 'enabled'}.`,
    );
    await load();
  };

  return (
    <section className="page">
      <h1>Users</h1>
      <form className="row" onSubmit={create} aria-label="Create user">
        <label>
          Email
          <input name="email" type="email" required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            required
            minLength={PASSWORD_MIN_LENGTH}
            autoComplete="new-password"
            aria-describedby="password-rule"
          />
          <small id="password-rule" className="muted">
            At least {PASSWORD_MIN_LENGTH} characters
          </small>
        </label>
        <Select label="Role" name="role" defaultValue="user" options={ROLES} />
        <button type="submit">Create user</button>
      </form>
      {canInvite && (
        <form className="row" onSubmit={invite} aria-label="Invite user">
          <label>
            Email to invite
            <input name="email" type="email" required />
          </label>
          <Select label="Role of the invited user" name="role" defaultValue="user" options={ROLES} />
          <button type="submit">Invite</button>
        </form>
      )}
      <OutcomeMessage outcome={outcome} />
      <AdminTable
        columns={['Email', 'Role', 'Created', 'Status']}
        actions
        rows={users}
        loading="Loading users…"
      >
        {users?.map((u) => (
          <tr key={u.id} data-testid="user-row">
            <th scope="row">{u.email}</th>
            <td data-label="Role">
              <label className="sr-only" htmlFor={`role-${u.id}`}>
                Role of {u.email}
              </label>
              <select
                id={`role-${u.id}`}
                value={u.role}
                disabled={u.id === self.id}
                onChange={(e) => update(u, { role: e.target.value === 'admin' ? 'admin' : 'user' })}
              >
                <option value="user">user</option>
                <option value="admin">admin</option>
              </select>
            </td>
            <td data-label="Created">{fmt(u.created_at)}</td>
            <td data-label="Status" data-testid="user-status">
              <span className={u.disabled ? 'badge status-error' : 'badge'}>
                {u.disabled ? 'disabled' : 'active'}
              </span>
            </td>
            <td className="actions">
              <button
                type="button"
                disabled={u.id === self.id}
                onClick={() => update(u, { disabled: !u.disabled })}
                aria-label={`${u.disabled ? 'Enable' : 'Disable'} ${u.email}`}
              >
                {u.disabled ? 'Enable' : 'Disable'}
              </button>
              <a href={`#/limits/user/${encodeURIComponent(u.id)}`}>
                Limits<span className="sr-only"> of {u.email}</span>
              </a>
              <button type="button" onClick={() => reset(u)}>
                Reset password<span className="sr-only"> of {u.email}</span>
              </button>
              <button
                type="button"
                disabled={u.id === self.id}
                onClick={() => remove(u)}
                aria-label={`Delete ${u.email}`}
              >
                Delete
              </button>
            </td>
          </tr>
        ))}
      </AdminTable>
      {resetting && (
        <FormDialog
          title={`Set a new password for ${resetting.email}`}
          submit="Set password"
          onSubmit={setPassword}
          onClose={() => setResetting(null)}
        >
          <p className="muted">Their sessions are signed out; their API keys keep working.</p>
          <label>
            New password
            <input
              name="password"
              type="password"
              required
              minLength={PASSWORD_MIN_LENGTH}
              autoComplete="new-password"
            />
          </label>
        </FormDialog>
      )}
    </section>
  );
}
