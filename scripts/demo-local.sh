#!/usr/bin/env bash
# A wsk cluster on loopback, without containers: Redis, two nodes, HAProxy with
# the sticky cookie and the /wsk -> / rewrite. Everything runs in the background
# with its logs and pids under .demo-local/; 'scripts/demo-local.sh stop' ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.demo-local
bin=.venv/bin
redis_port=${WSK_DEMO_REDIS_PORT:-6390}
node_ports=(${WSK_DEMO_NODE_PORTS:-5100 5101})
http_port=${WSK_DEMO_HTTP_PORT:-8088}

stop() {
    [ -d "$state" ] || return 0
    for pidfile in "$state"/*.pid; do
        [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

if [ "${1:-start}" = stop ]; then
    stop
    echo "local demo stopped"
    exit 0
fi

stop
mkdir -p "$state"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$state/redis.log" 2>&1 &
echo $! >"$state/redis.pid"

servers=()
for port in "${node_ports[@]}"; do
    # --sid-prefix: HAProxy routes a long-polling request by its sid to the node it names
    "$bin/wsk-server" --host 127.0.0.1 --port "$port" --redis-url "redis://127.0.0.1:$redis_port/0" \
        --heartbeat-interval 5 --heartbeat-jitter 2 --sid-prefix "node-$port" --allow-eio3 yes \
        >"$state/node-$port.log" 2>&1 &
    echo $! >"$state/node-$port.pid"
    servers+=(--server "node-$port=127.0.0.1:$port")
done

# the same configuration as the tests' cluster (testkit/haproxy.py)
"$bin/python" -m testkit.haproxy --bind "127.0.0.1:$http_port" "${servers[@]}" >"$state/haproxy.cfg"
haproxy -c -q -f "$state/haproxy.cfg"
haproxy -db -f "$state/haproxy.cfg" >"$state/haproxy.log" 2>&1 &
echo $! >"$state/haproxy.pid"
sleep 0.5
kill -0 "$(cat "$state/haproxy.pid")" 2>/dev/null || {
    echo "haproxy did not start (is port $http_port taken?); see $state/haproxy.log" >&2
    exit 1
}

for port in "${node_ports[@]}"; do
    for _ in $(seq 50); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || {
        echo "node on port $port did not become healthy; see $state/node-$port.log" >&2
        exit 1
    }
done

cat <<MSG

wsk demo cluster is up on loopback: Redis :$redis_port, nodes :${node_ports[*]}, HAProxy :$http_port.
Watch it live in a browser (nodes, your connection, a room, a chart):
    http://127.0.0.1:$http_port/wsk/
Connect a client (Ctrl-C to leave):
    .venv/bin/wsk-client http://127.0.0.1:$http_port
Send an event to every client from anywhere:
    .venv/bin/wsk-emit --redis-url redis://127.0.0.1:$redis_port/0 message '{"text": "hello"}'
Logs: $state/*.log    Stop it: make demo-local-stop
MSG
