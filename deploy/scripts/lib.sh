# shellcheck shell=bash
# Shared by deploy/scripts/deploy and deploy/scripts/rollback (sourced, not executed).
#
# Environment (all optional):
#   COMPOSE             the compose command, split on spaces (default: "docker compose"). Tests point it
#                       at a stub; "docker compose -f compose.yaml -f compose.override.yaml" works too.
#   DRY_RUN=1           print every command instead of running it (and change no state)
#   REPLICAS            the replica services, replaced in this order (default: colloquy-1 colloquy-2 colloquy-3)
#   READY_TIMEOUT       seconds a replica gets to pass /health/ready (default: 120)
#   READY_INTERVAL      seconds between readiness probes (default: 2)
#   STATE_DIR           where the current/previous image and the last backup are recorded
#                       (default: deploy/.state)
#   ENV_FILE            the .env whose COLLOQUY_IMAGE line is updated after a deploy (default: .env)
#   NGINX_SERVICE       the edge proxy: each replica is taken out of its upstream before it is stopped and
#                       put back once ready (default: nginx; empty: no nginx to steer, skip)
#   NGINX_UPSTREAM_CONF the rendered upstream inside the nginx container, where each replica is listed as
#                       `server SERVICE:REPLICA_PORT …;` (default: /etc/nginx/colloquy.d/colloquy.conf)
#   REPLICA_PORT        the replicas' port in that upstream (default: 8000)
#   TAKE_OUT_SETTLE     seconds between taking a replica out and stopping it, so nginx's reload has taken
#                       over before the replica stops answering (default: 5)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COMPOSE=${COMPOSE:-docker compose}
read -r -a COMPOSE_CMD <<<"$COMPOSE"
DRY_RUN=${DRY_RUN:-0}
read -r -a REPLICA_LIST <<<"${REPLICAS:-colloquy-1 colloquy-2 colloquy-3}"
READY_TIMEOUT=${READY_TIMEOUT:-120}
READY_INTERVAL=${READY_INTERVAL:-2}
STATE_DIR=${STATE_DIR:-$ROOT/deploy/.state}
ENV_FILE=${ENV_FILE:-$ROOT/.env}
NGINX_SERVICE=${NGINX_SERVICE-nginx}
NGINX_UPSTREAM_CONF=${NGINX_UPSTREAM_CONF:-/etc/nginx/colloquy.d/colloquy.conf}
REPLICA_PORT=${REPLICA_PORT:-8000}
TAKE_OUT_SETTLE=${TAKE_OUT_SETTLE:-5}
# deploy/scripts/nginx-route, run by sh inside the nginx container (the image needs nothing installed).
NGINX_ROUTE_SH=$(<"$(dirname "${BASH_SOURCE[0]}")/nginx-route")
# Replicas whose put-back failed; put_back_pending retries them once every replica runs.
PUT_BACK_PENDING=()
SCRIPT_NAME=${SCRIPT_NAME:-colloquy}

# Run inside a replica: exit 0 only when GET /health/ready answers 200 (database, schema, Redis, not draining).
READY_PROBE_JS="fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health/ready',{signal:AbortSignal.timeout(3000)}).then(async r=>{if(!r.ok)console.error(await r.text());process.exit(r.ok?0:1)},e=>{console.error(String(e));process.exit(1)})"

# Run in the new image: `colloquy doctor --json`, printed, failing on any error except pending migrations
# (expected before `migrate up`, which is the next step).
# shellcheck disable=SC2034 # used by deploy
read -r -d '' DOCTOR_GATE_JS <<'JS' || true
const { spawnSync } = require('node:child_process');
const r = spawnSync(process.execPath, ['/app/dist/main.js', 'doctor', '--json'], { encoding: 'utf8' });
let report;
try {
  report = JSON.parse(r.stdout);
} catch {
  process.stderr.write(`doctor did not answer JSON (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  process.exit(1);
}
let blocking = 0;
for (const f of report.findings) {
  const expected = f.id === 'database.pending_migrations';
  if (f.severity === 'error' && !expected) blocking++;
  console.log(`${f.severity.toUpperCase()} ${f.id}: ${f.message}${expected ? ' (applied by the migrate step)' : ''}`);
}
process.exit(blocking ? 1 : 0);
JS

# The arguments as a shell would read them back; multi-line scripts are shown as <script>.
show() {
  local arg out=()
  for arg in "$@"; do
    if [[ $arg == *$'\n'* ]]; then out+=("<script>"); else out+=("$(printf '%q' "$arg")"); fi
  done
  printf '%s' "${out[*]}"
}

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# run CMD…: log it, then run it (DRY_RUN: log only).
run() {
  log "+ $(show "$@")"
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  "$@"
}

# compose_as IMAGE ARGS…: the compose command with COLLOQUY_IMAGE=IMAGE (compose.yaml reads it).
compose_as() {
  local image=$1
  shift
  log "+ COLLOQUY_IMAGE=$image $(show "${COMPOSE_CMD[@]}" "$@")"
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  COLLOQUY_IMAGE=$image "${COMPOSE_CMD[@]}" "$@"
}

compose() { run "${COMPOSE_CMD[@]}" "$@"; }

state_get() {
  local file=$STATE_DIR/$1
  if [[ -s $file ]]; then cat "$file"; fi
}

state_set() {
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$2" >"$STATE_DIR/$1.tmp"
  mv "$STATE_DIR/$1.tmp" "$STATE_DIR/$1"
}

# The image running now: recorded by the last deploy, else COLLOQUY_IMAGE from .env.
current_image() {
  local image
  image=$(state_get current-image)
  if [[ -z $image && -f $ENV_FILE ]]; then
    image=$(sed -n 's/^COLLOQUY_IMAGE=//p' "$ENV_FILE" | tail -n 1)
    image=${image//\"/}
  fi
  printf '%s' "$image"
}

# Pin IMAGE in .env so a later plain `docker compose up -d` keeps it.
pin_image() {
  local image=$1
  if [[ $DRY_RUN == 1 ]]; then
    log "would set COLLOQUY_IMAGE=$image in $ENV_FILE"
    return 0
  fi
  if [[ -f $ENV_FILE ]] && grep -q '^COLLOQUY_IMAGE=' "$ENV_FILE"; then
    local tmp
    tmp=$(mktemp "$ENV_FILE.XXXXXX")
    sed "s|^COLLOQUY_IMAGE=.*|COLLOQUY_IMAGE=$image|" "$ENV_FILE" >"$tmp"
    chmod --reference="$ENV_FILE" "$tmp" 2>/dev/null || chmod 600 "$tmp"
    mv "$tmp" "$ENV_FILE"
  else
    printf 'COLLOQUY_IMAGE=%s\n' "$image" >>"$ENV_FILE"
  fi
}

record_history() {
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  mkdir -p "$STATE_DIR"
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$STATE_DIR/history"
}

# One deploy or rollback at a time.
take_lock() {
  if [[ $DRY_RUN == 1 ]] || ! command -v flock >/dev/null 2>&1; then return 0; fi
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -n 9 || die "another deploy or rollback is running (lock: $STATE_DIR/lock)"
}

# wait_ready SERVICE: poll /health/ready inside the container until it passes or READY_TIMEOUT expires.
wait_ready() {
  local service=$1 deadline
  log "waiting for $service to pass /health/ready (up to ${READY_TIMEOUT}s)"
  if [[ $DRY_RUN == 1 ]]; then
    log "+ ${COMPOSE_CMD[*]} exec -T $service node -e <GET /health/ready>"
    return 0
  fi
  deadline=$((SECONDS + READY_TIMEOUT))
  while true; do
    if "${COMPOSE_CMD[@]}" exec -T "$service" node -e "$READY_PROBE_JS"; then
      log "$service is ready"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "$service did not become ready within ${READY_TIMEOUT}s"
      return 1
    fi
    sleep "$READY_INTERVAL"
  done
}

# route out|in SERVICE…: nginx-route in the nginx container, for the replicas' upstream addresses.
route() {
  local state=$1 service addresses=()
  shift
  for service in "$@"; do addresses+=("$service:$REPLICA_PORT"); done
  compose exec -T "$NGINX_SERVICE" sh -c "$NGINX_ROUTE_SH" nginx-route "$state" "$NGINX_UPSTREAM_CONF" "${addresses[@]}"
}

# take_out SERVICE: nginx stops sending it requests (its old workers finish the ones in flight); then wait
# TAKE_OUT_SETTLE seconds so the reload has taken over before SERVICE is stopped. Without this, requests
# nginx sends as the replica's listener closes fail, and nginx never replays a POST it already sent.
take_out() {
  local service=$1
  if [[ -z $NGINX_SERVICE ]]; then return 0; fi
  if route out "$service"; then
    run sleep "$TAKE_OUT_SETTLE"
  else
    log "warning: could not take $service out of $NGINX_SERVICE: requests it gets while stopping may fail"
  fi
}

# put_back SERVICE: nginx routes to it again; the reload also resolves its new container's address. nginx
# refuses a configuration naming a container that is not running, so this can fail while another replica
# is down: SERVICE is then left for put_back_pending (nginx keeps serving from the others).
put_back() {
  local service=$1
  if [[ -z $NGINX_SERVICE ]]; then return 0; fi
  if ! route in "$service"; then
    log "warning: could not put $service back into $NGINX_SERVICE yet: retried once every replica runs"
    PUT_BACK_PENDING+=("$service")
  fi
}

# put_back_pending: every replica whose put-back failed, back into nginx now; fails if nginx refuses.
put_back_pending() {
  if [[ -z $NGINX_SERVICE || ${#PUT_BACK_PENDING[@]} -eq 0 ]]; then return 0; fi
  if ! route in "${PUT_BACK_PENDING[@]}"; then
    log "error: $NGINX_SERVICE does not route to ${PUT_BACK_PENDING[*]}"
    return 1
  fi
  PUT_BACK_PENDING=()
}

# replace_replica IMAGE SERVICE [--force]: take SERVICE out of nginx, recreate it on IMAGE (compose stops
# it with SIGTERM: it finishes its requests and streams within SHUTDOWN_TIMEOUT), gate on readiness, put it
# back. The other replicas serve meanwhile. A replica failing its gate stays out of nginx.
replace_replica() {
  local image=$1 service=$2 force=${3:-}
  local args=(up -d --no-deps)
  if [[ $force == --force ]]; then args+=(--force-recreate); fi
  take_out "$service"
  compose_as "$image" "${args[@]}" "$service" || return 1
  wait_ready "$service" || return 1
  put_back "$service"
}

# restore_backup IMAGE FILE: stop every replica, restore FILE (inside the backups volume), done. The
# caller starts the replicas again.
restore_backup() {
  local image=$1 file=$2
  log "restoring $file: stopping every replica first (nginx answers 503 meanwhile)"
  compose stop "${REPLICA_LIST[@]}" || return 1
  compose_as "$image" run --rm --no-deps -T migrate restore --yes "$file" || return 1
}

# rollback_to IMAGE [BACKUP]: every replica back on IMAGE, one at a time and readiness-gated. With BACKUP,
# the database is restored first, with every replica stopped; they then start together (nothing is
# serving to keep up) and are all put back into nginx once ready.
rollback_to() {
  local image=$1 backup=${2:-} service
  log "rolling back to $image${backup:+ with the database restored from $backup}"
  if [[ -n $backup ]]; then
    restore_backup "$image" "$backup" || return 1
    compose_as "$image" up -d --no-deps "${REPLICA_LIST[@]}" || return 1
    for service in "${REPLICA_LIST[@]}"; do
      wait_ready "$service" || return 1
    done
    PUT_BACK_PENDING=("${REPLICA_LIST[@]}")
  else
    for service in "${REPLICA_LIST[@]}"; do
      replace_replica "$image" "$service" || return 1
    done
  fi
  put_back_pending || return 1
  state_set current-image "$image"
  pin_image "$image"
  record_history "rolled back to $image${backup:+ (restored $backup)}"
  log "rollback to $image complete"
}
