import { randomBytes } from 'node:crypto';
import type { DoctorDeps, Finding } from '../../src/ops/doctor.js';

/** For the doctor suites that check one provider: a strong secret, the database and Redis taken as fine. */
export const DOCTOR_SECRET = randomBytes(36).toString('base64url');

export const cloudDoctorDeps: DoctorDeps = {
  envFile: null,
  inspectDatabase: async () => ({ exists: true, pending: [], unknown: [] }),
  pingRedis: async () => {},
  timeoutMs: 3_000,
};

/** The findings whose id starts with `prefix` (`cloud.gemini`). */
export const findingsOf = (findings: Finding[], prefix: string) =>
  findings.filter((f) => f.id.startsWith(prefix));
