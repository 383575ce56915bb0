#!/usr/bin/env bash
# The matchmaker as a cluster on this machine, from the deploy/ files: Redis, three
# matchmaker nodes sharing lobbies through it, HAProxy in front (deploy/haproxy.cfg, health
# checks on /readyz) and coturn as the TURN fleet (deploy/coturn/turnserver.conf). Then the
# quickstart plays through HAProxy — its players spread over the three nodes — once directly
# and once relay-only through coturn; one node is drained (SIGTERM) and the quickstart plays
# again through the other two. Everything runs on loopback, on free ports, and is stopped at
# the end. Also checks the systemd unit (systemd-analyze verify).
#   scripts/cluster.sh            (extra arguments go to each quickstart run, e.g. --peers 8)
#   scripts/cluster.sh --debug    the debug build (scripts/test.sh: reuses the tests' build)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
bin_dir=release
if [ "${1:-}" = "--debug" ]; then
  profile=()
  bin_dir=debug
  shift
fi
scripts/setup.sh cluster
source scripts/env.sh
source scripts/steps.sh

step "building the matchmaker and the quickstart ($bin_dir; the first build takes a few minutes)" \
  cargo build "${profile[@]}" --locked -p squadlink-matchmaker --bin squadlink-matchmaker \
  -p squadlink-examples --bin quickstart
bin="$CARGO_TARGET_DIR/$bin_dir"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (up to 15 s) until an HTTP GET answers 200.
wait_http() {
  for _ in $(seq 150); do
    if curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "cluster: $1 never answered 200 (logs in $work)" >&2
  return 1
}
fail() {
  echo "cluster: $*" >&2
  for log in "$work"/*.log; do
    echo "--- the last lines of $log:" >&2
    tail -n 20 "$log" >&2
  done
  exit 1
}

# The systemd unit parses and names only known settings (the binary path made real).
sed "s|/usr/local/bin/squadlink-matchmaker|$bin/squadlink-matchmaker|" \
  deploy/squadlink-matchmaker.service >"$work/squadlink-matchmaker.service"
step "deploy/squadlink-matchmaker.service passes systemd-analyze verify" \
  systemd-analyze verify "$work/squadlink-matchmaker.service"

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then break; fi
  sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null || fail "redis-server did not start"
echo "cluster: redis on 127.0.0.1:$redis_port"

# coturn with the deploy config, on loopback: local ports, no TLS files, relaying to
# loopback, and (Debian's coturn is built without it) no prometheus line.
turn_port=$(free_port)
turn_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
sed -e "s/^listening-port=.*/listening-port=$turn_port/" \
  -e "s/^listening-ip=.*/listening-ip=127.0.0.1/" \
  -e "s/^static-auth-secret=.*/static-auth-secret=$turn_secret/" \
  -e '/^tls-listening-port=/d' -e '/^cert=/d' -e '/^pkey=/d' \
  -e '/^denied-peer-ip=127\./d' \
  -e 's/^log-file=.*/log-file=stdout/' \
  deploy/coturn/turnserver.conf >"$work/turnserver.conf"
# Every player is on this machine: let coturn relay to loopback (never in production).
printf 'allow-loopback-peers\npidfile=%s\n' "$work/turnserver.pid" >>"$work/turnserver.conf"
if ! turnserver --help 2>&1 | grep -q -- '--prometheus'; then
  sed -i '/^prometheus$/d' "$work/turnserver.conf"
  echo "cluster: this coturn is built without Prometheus support; its metrics line is left out"
fi
turnserver -c "$work/turnserver.conf" --no-stdout-log >"$work/coturn.log" 2>&1 &
pids+=($!)
echo "cluster: coturn on 127.0.0.1:$turn_port (region 'local')"

node_ports=()
metrics_ports=()
node_pids=()
for n in 1 2 3; do
  port=$(free_port)
  metrics=$(free_port)
  "$bin/squadlink-matchmaker" --listen "127.0.0.1:$port" \
    --redis-url "redis://127.0.0.1:$redis_port/" --dev-mode on --max-connections 4096 \
    --turn-server "local=turn:127.0.0.1:$turn_port?transport=udp" --turn-secret "$turn_secret" \
    --metrics-listen "127.0.0.1:$metrics" --drain-secs 10 >"$work/node$n.log" 2>&1 &
  pids+=($!)
  node_pids+=($!)
  node_ports+=("$port")
  metrics_ports+=("$metrics")
  wait_http "http://127.0.0.1:$port/readyz" || fail "node $n is not ready"
done
echo "cluster: matchmaker nodes on 127.0.0.1:${node_ports[0]}, :${node_ports[1]}, :${node_ports[2]}"

lb_port=$(free_port)
stats_port=$(free_port)
SQUADLINK_LB_BIND="127.0.0.1:$lb_port" SQUADLINK_LB_STATS="127.0.0.1:$stats_port" \
  SQUADLINK_NODE1="127.0.0.1:${node_ports[0]}" SQUADLINK_NODE2="127.0.0.1:${node_ports[1]}" \
  SQUADLINK_NODE3="127.0.0.1:${node_ports[2]}" \
  haproxy -db -f deploy/haproxy.cfg >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$lb_port/readyz" || fail "HAProxy does not forward"
url="ws://127.0.0.1:$lb_port/v1"
echo "cluster: HAProxy on 127.0.0.1:$lb_port (stats on :$stats_port)"

# How many connections each node has served so far (its metrics).
spread() {
  local out=()
  for m in "${metrics_ports[@]}"; do
    local n
    n=$(curl -fsS --max-time 2 "http://127.0.0.1:$m/metrics" 2>/dev/null |
      awk '/^squadlink_messages_total\{kind="hello"\}/ { print $2 }')
    out+=("${n:-down}")
  done
  echo "${out[*]}"
}

echo
echo "== quickstart through HAProxy (players spread over the nodes)"
"$bin/quickstart" --matchmaker "$url" "$@" || fail "the quickstart failed through the cluster"
echo "cluster: hellos per node: $(spread)"

echo
echo "== quickstart relay-only, through the cluster's TURN fleet (coturn)"
"$bin/quickstart" --matchmaker "$url?region=local" --relay-only "$@" ||
  fail "the relay-only quickstart failed through the cluster"
echo "cluster: hellos per node: $(spread)"

# Players connected to node $1 now (a live gauge).
players_on() {
  curl -fsS --max-time 2 "http://127.0.0.1:${metrics_ports[$1]}/metrics" 2>/dev/null |
    awk '/^squadlink_connections / { print $2 }'
}

echo
echo "== node 1 drains (SIGTERM) while the quickstart plays: its players move through HAProxy"
"$bin/quickstart" --matchmaker "$url" --duration 6 --json "$@" >"$work/drain.json" &
playing=$!
for _ in $(seq 100); do
  if [ "$(players_on 0)" != "" ] && [ "$(players_on 0)" != "0" ]; then break; fi
  sleep 0.1
done
on_node1=$(players_on 0)
sleep 1
kill -TERM "${node_pids[0]}"
for _ in $(seq 150); do
  if ! kill -0 "${node_pids[0]}" 2>/dev/null; then break; fi
  sleep 0.1
done
kill -0 "${node_pids[0]}" 2>/dev/null && fail "node 1 did not exit after draining"
wait "$playing" || fail "the quickstart lost a peer or a player while node 1 drained"
python3 - "$work/drain.json" "${on_node1:-0}" <<'PY' || fail "the drain was not seamless"
import json, sys
out = json.load(open(sys.argv[1]))
moved = int(float(sys.argv[2]))
print(f"cluster: node 1 drained with {moved} players on it; "
      f"{out['matchmaker_returns']} matchmaker reconnections, "
      f"{out['disconnections']} peer connections lost")
assert out["all_connected"] and out["disconnections"] == 0
assert moved == 0 or out["matchmaker_returns"] >= moved
PY

echo
echo "== the quickstart again, on the two nodes left"
for _ in $(seq 50); do
  if curl -fsS --max-time 1 "http://127.0.0.1:$stats_port/;csv" 2>/dev/null |
    grep -q '^matchmakers,node1,.*DOWN'; then break; fi
  sleep 0.1
done
"$bin/quickstart" --matchmaker "$url" "$@" || fail "the quickstart failed after a drain"
echo "cluster: hellos per node: $(spread)"
echo
echo "cluster: ok"
