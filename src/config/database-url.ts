import path from 'node:path';

export type DatabaseTarget =
  | { dialect: 'sqlite'; path: string }
  | { dialect: 'postgres'; url: string }
  | { dialect: 'mysql'; url: string };

export const DEFAULT_SQLITE_PATH = './data/colloquy.db';

interface DatabaseEnv {
  DATABASE_URL?: string | undefined;
  DB_HOST?: string | undefined;
  DB_PORT: number;
  DB_USER?: string | undefined;
  DB_PASSWORD?: string | undefined;
  DB_NAME: string;
}

/**
 * Resolution order operators expect: an explicit DATABASE_URL wins; in production the DB_* parts build a
 * PostgreSQL URL; otherwise a SQLite file under ./data.
 */
export function resolveDatabaseTarget(env: DatabaseEnv, isProduction: boolean): DatabaseTarget {
  if (env.DATABASE_URL) return parseDatabaseUrl(env.DATABASE_URL);
  if (isProduction && env.DB_HOST) {
    const auth = env.DB_USER
      ? `${encodeURIComponent(env.DB_USER)}${env.DB_PASSWORD ? `:${encodeURIComponent(env.DB_PASSWORD)}` : ''}@`
      : '';
    return {
      dialect: 'postgres',
      url: `postgresql://${auth}${env.DB_HOST}:${env.DB_PORT}/${encodeURIComponent(env.DB_NAME)}`,
    };
  }
  return { dialect: 'sqlite', path: path.resolve(DEFAULT_SQLITE_PATH) };
}

export function parseDatabaseUrl(url: string): DatabaseTarget {
  if (/^postgres(ql)?:\/\//i.test(url)) return { dialect: 'postgres', url };
  // MySQL 8 and MariaDB 10.6+ (the mysql2 driver speaks to both).
  if (/^(mysql|mariadb):\/\//i.test(url))
    return { dialect: 'mysql', url: url.replace(/^mariadb:/i, 'mysql:') };
  const sqlite = /^sqlite:(\/\/)?(.+)$/i.exec(url);
  if (sqlite?.[2]) {
    const file = sqlite[2];
    return { dialect: 'sqlite', path: file === ':memory:' ? file : path.resolve(file) };
  }
  throw new Error(
    'expected sqlite:PATH, sqlite://PATH, postgres://…, postgresql://…, mysql://… or mariadb://…',
  );
}

/** For logs and CLI output: the URL with any password replaced. */
export function describeDatabaseTarget(target: DatabaseTarget): string {
  if (target.dialect === 'sqlite') return `sqlite:${target.path}`;
  try {
    const u = new URL(target.url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return `${target.dialect}:(unparseable url)`;
  }
}
