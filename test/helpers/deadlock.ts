import type { Db } from '../../src/db/database.js';

/**
 * The database, except that its first statement is refused as InnoDB refuses a deadlock's victim (mysql2's
 * error shape; PostgreSQL's code is 40P01): the statement did nothing and may be sent again. `statements()`
 * counts every statement sent, the refused one included.
 */
export function firstStatementDeadlocks(db: Db): { db: Db; statements: () => number } {
  let sent = 0;
  const proxy = new Proxy(db, {
    get(target, prop) {
      if (prop !== 'executeQuery') {
        // Kysely's private fields need the real object as `this`.
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return (query: Parameters<typeof target.executeQuery>[0]) => {
        if (sent++ === 0)
          return Promise.reject(
            Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), {
              code: 'ER_LOCK_DEADLOCK',
              errno: 1213,
              sqlState: '40001',
            }),
          );
        return target.executeQuery(query);
      };
    },
  });
  return { db: proxy, statements: () => sent };
}
