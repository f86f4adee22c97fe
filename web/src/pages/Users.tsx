import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type User } from '../api/client';
import { fmt } from './Keys';

export function UsersPage({ self }: { self: User }) {
  const [users, setUsers] = useState<User[]>([]);
  const [error, setError] = useState('');
  const load = useCallback(
    () =>
      api.users().then(
        (u) => setUsers(u.data),
        (e) => setError(errorText(e)),
      ),
    [],
  );
  useEffect(() => void load(), [load]);

  const create = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const f = new FormData(form);
    try {
      await api.createUser({
        email: String(f.get('email')),
        password: String(f.get('password')),
        role: f.get('role') === 'admin' ? 'admin' : 'user',
      });
      form.reset();
      setError('');
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const update = async (u: User, body: { role?: 'admin' | 'user'; disabled?: boolean }) => {
    try {
      await api.updateUser(u.id, body);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
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
          <input name="password" type="password" required minLength={8} autoComplete="new-password" />
        </label>
        <label>
          Role
          <select name="role" defaultValue="user">
            <option value="user">user</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <button type="submit">Create user</button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Email</th>
            <th scope="col">Role</th>
            <th scope="col">Created</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {users.map((u) => (
            <tr key={u.id}>
              <th scope="row">{u.email}</th>
              <td>
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
              <td>{fmt(u.created_at)}</td>
              <td>
                <button
                  type="button"
                  disabled={u.id === self.id}
                  onClick={() => update(u, { disabled: !u.disabled })}
                >
                  {u.disabled ? `Enable ${u.email}` : `Disable ${u.email}`}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
