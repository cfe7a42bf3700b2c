#!/usr/bin/env bash
# The demo cluster in local containers: HAProxy (lb1), two wsk nodes (app1,
# app2) and Redis (redis1), deployed by playbooks/site.yml through Molecule's
# default scenario.
#
#   scripts/demo-cluster.sh up       create (or update) it and say how to connect
#   scripts/demo-cluster.sh down     remove the containers (the image stays)
#   scripts/demo-cluster.sh status   list its containers
#
# Molecule's dependency step makes the demo's throwaway CA and certificates in
# .demo-tls/ (scripts/demo-certificates.sh).
#
# Needs the deployment tools in the virtualenv (requirements-dev.txt) and the
# project itself there (for wsk-client): `make` installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${WSK_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
http_port=${WSK_MOLECULE_HTTP_PORT:-8080}
https_port=${WSK_MOLECULE_HTTPS_PORT:-8443}
redirect_port=${WSK_MOLECULE_REDIRECT_PORT:-8081}
ca=$PWD/.demo-tls/ca.crt
stats_port=${WSK_MOLECULE_STATS_PORT:-8404}

if ! command -v molecule >/dev/null 2>&1; then
    echo "demo-cluster: molecule is not in $venv; run: $venv/bin/pip install -r requirements-dev.txt" >&2
    exit 2
fi

case ${1:-up} in
    up)
        scripts/docker-engine.sh
        molecule converge
        cat <<MESSAGE

The wsk demo cluster is up (containers lb1, app1, app2, redis1).
  the live page       https://127.0.0.1:$https_port/wsk/   (trust $ca, or use http://127.0.0.1:$http_port/wsk/)
  Socket.IO endpoint  https://127.0.0.1:$https_port/wsk   (TLS; http://127.0.0.1:$redirect_port redirects to it)
  plain, for tools    http://127.0.0.1:$http_port/wsk
  the demo's CA       $ca   (throwaway, made for this demo; trust it nowhere else)
  HAProxy stats       http://127.0.0.1:$stats_port/stats   (admin / wsk-demo-stats-password, inventory/demo)
Connect a client over TLS that prints every event (okok heartbeats arrive every second):
  $venv/bin/wsk-client https://127.0.0.1:$https_port --ca-file $ca --path /wsk --transport both
or in plain HTTP:
  $venv/bin/wsk-client http://127.0.0.1:$http_port --path /wsk --transport both
Tokens are optional here (--auth optional, every room open without one); with one:
  $venv/bin/wsk-client https://127.0.0.1:$https_port --ca-file $ca --room chat.demo \\
      --token "\$($venv/bin/wsk-token --auth-jwt-key-file $PWD/.demo-tls/jwt.key --sub you --rooms 'chat.*' --publish 'chat.*')"
Deploy again after a change:   $venv/bin/ansible-playbook playbooks/site.yml
Operate a node:                docker exec app1 systemctl status 'wsk@*'
Remove it:                     make destroy
MESSAGE
        ;;
    down)
        if docker info >/dev/null 2>&1; then
            molecule destroy
        fi
        ;;
    status)
        docker ps --filter "name=^(lb1|app1|app2|redis1)$" --format '{{.Names}}\t{{.Status}}\t{{.Ports}}'
        ;;
    *)
        echo "usage: $0 [up|down|status]" >&2
        exit 2
        ;;
esac
