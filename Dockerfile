# syntax=docker/dockerfile:1.7
#
# Colloquy production image.
#   docker build -t colloquy:1.0.0 .
#   docker run --rm -p 8000:8000 --env-file .env colloquy:1.0.0            # serve (the default command)
#   docker run --rm --env-file .env colloquy:1.0.0 migrate up               # any CLI command
#
# Stages: `deps` (all dependencies, native modules compiled) → `build` (tsc → dist/) and, in parallel,
# `prod-deps` (`npm ci --omit=dev`) → `runtime` (node:24-bookworm-slim + prod node_modules + dist, non-root,
# tini as PID 1). The runtime stage is built FROM the same base as the stages that compiled the native
# modules (better-sqlite3, argon2), so their .node binaries match its glibc and Node ABI.
#
# Node.js 24 (LTS, supported until 2028-04-30; CI runs the test suite on it). 22 is supported as well
# (`--build-arg NODE_VERSION=22`, until 2027-04-30). 20 reached its end of life in April 2026: not for images.

ARG NODE_VERSION=24
ARG DEBIAN_RELEASE=bookworm

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS base
ENV NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false \
    NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app

# A toolchain for node-gyp, used only when no prebuilt binary of better-sqlite3 or argon2 fits.
FROM base AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Install scripts: better-sqlite3, argon2 (and esbuild, dev only) must run theirs. package.json's
# `allowScripts` lists exactly those, so installs keep working when npm enforces it (npm 12); never add
# --ignore-scripts here or the native modules are missing at run time.
FROM toolchain AS deps
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci

FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# The web console: built static assets, served by the server at /console.
COPY web ./web
RUN npm run build:console

FROM toolchain AS prod-deps
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev \
 && npm cache clean --force

FROM base AS runtime
ARG PG_MAJOR=16
# tini: PID 1 that forwards SIGTERM/SIGINT to node and reaps zombies (the `docker run --init` equivalent).
# postgresql-client-${PG_MAJOR} (PGDG): pg_dump/pg_restore for `colloquy backup|restore`; the major must be
# at least the server's (compose.yaml runs PostgreSQL 16).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates postgresql-common \
 && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 colloquy \
 && useradd --system --uid 10001 --gid colloquy --home-dir /app --shell /usr/sbin/nologin colloquy \
 && mkdir -p /app/data /app/backups \
 && chown colloquy:colloquy /app/data /app/backups \
 && printf '#!/bin/sh\nexec node /app/dist/main.js "$@"\n' > /usr/local/bin/colloquy \
 && chmod 0755 /usr/local/bin/colloquy

ENV NODE_ENV=production \
    COLLOQUY_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json

COPY --from=prod-deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=build --chown=root:root /app/web/dist ./web/dist
COPY --chown=root:root package.json ./

# Code is owned by root and read-only for the service user; only data/ and backups/ are writable.
USER colloquy:colloquy
EXPOSE 8000

# Liveness only (the event loop turns): readiness (/health/ready) depends on PostgreSQL and Redis and is
# what load balancers and compose's depends_on use. No curl in the image: Node's fetch does the request.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health/live',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# SIGTERM drains in-flight requests and streams for SHUTDOWN_TIMEOUT seconds, then exits 0: give the
# container at least that long (compose: stop_grace_period, Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/main.js"]
CMD ["serve"]
