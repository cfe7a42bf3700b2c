"""The HAProxy configuration of a local cluster: the tests', the benchmark's and demo-local's.

It is the haproxy role's shape on loopback: the public prefix ``/wsk`` rewritten
to the nodes' ``/``, a sticky cookie inserted by HAProxy, ``/healthz`` checks,
and the role's node-loss settings: redispatch on every retry, fast checks while a
server changes state, live traffic watched at layer 4 (``error-limit``), and the
sessions of a server marked down shut at once. What differs between its users are
parameters: the cookie (off for the tests' non-sticky control), the balance,
maxconn, the timeouts.

    python -m testkit.haproxy --bind 127.0.0.1:8088 --server node-5100=127.0.0.1:5100 ...

prints one (scripts/demo-local.sh writes its configuration so).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

TEMPLATE = """\
global
    # each proxied connection takes two descriptors
    maxconn {maxconn}
{stats_socket}
defaults
    mode http
    maxconn {maxconn}
    timeout connect {connect_timeout}
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    timeout check {check_timeout}
    # a failed connect is retried on another server at once
    option redispatch 1
    retries 2

frontend public
    bind {bind}
    http-request deny deny_status 404 unless {{ path /wsk }} || {{ path_beg /wsk/ }}
    default_backend wsk

backend wsk
    balance {balance}
    option httpchk GET /healthz
    http-check expect status 200
    http-request replace-path ^/wsk/?(.*) /\\1
{cookie}{routes}{servers}
"""


# the role's defaults (haproxy_observe_error_limit, haproxy_shutdown_sessions_on_down)
OBSERVE = "observe layer4 error-limit 2 on-error mark-down on-marked-down shutdown-sessions"


@dataclass(frozen=True)
class Server:
    """One backend server: a node."""

    name: str
    host: str
    port: int


def config(
    bind: str,
    servers: Sequence[Server],
    sticky: bool = True,
    cookie: str = "WSKID",
    balance: str = "leastconn",
    maxconn: int = 9000,
    connect_timeout: str = "500ms",
    check: str = "inter 300ms fastinter 150ms downinter 300ms fall 2 rise 2",
    sid_routing: bool = True,
    stats_socket: str | None = None,
    check_timeout: str = "2s",
    observe: str = OBSERVE,
) -> str:
    """The configuration text.

    With ``sid_routing`` (and ``sticky``), a request whose ``sid`` starts with a
    server's name and ``~`` goes to that server before any cookie is looked at
    (``use-server`` has precedence over cookie persistence): a node started with
    ``--sid-prefix <its server name>`` keeps its long-polling clients without cookies.
    ``stats_socket``: a path for an admin-level runtime API socket (``show stat``,
    ``set server``), as the role's ``/run/haproxy/admin.sock``.
    """
    cookie_line = f"    cookie {cookie} insert indirect nocache httponly\n" if sticky else ""
    routes = "".join(
        f"    use-server {s.name} if {{ urlp(sid) -m beg {s.name}~ }}\n"
        for s in servers
        if sticky and sid_routing
    )
    lines = "".join(
        f"    server {s.name} {s.host}:{s.port} check {check}"
        + (f" {observe}" if observe else "")
        + (f" cookie {s.name}" if sticky else "")
        + "\n"
        for s in servers
    )
    return TEMPLATE.format(
        bind=bind,
        balance=balance,
        maxconn=maxconn,
        connect_timeout=connect_timeout,
        check_timeout=check_timeout,
        stats_socket=(
            f"    stats socket {stats_socket} mode 600 level admin\n" if stats_socket else ""
        ),
        cookie=cookie_line,
        routes=routes,
        servers=lines,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.haproxy", description=__doc__)
    parser.add_argument("--bind", required=True, help="address:port of the frontend")
    parser.add_argument(
        "--server", action="append", required=True, metavar="NAME=HOST:PORT", help="a node"
    )
    parser.add_argument("--maxconn", type=int, default=4000)
    parser.add_argument("--check", default="inter 1s fall 2 rise 2")
    args = parser.parse_args(argv)
    servers = []
    for spec in args.server:
        name, _, address = spec.partition("=")
        host, _, port = address.rpartition(":")
        servers.append(Server(name, host, int(port)))
    sys.stdout.write(config(args.bind, servers, maxconn=args.maxconn, check=args.check))
    return 0


if __name__ == "__main__":
    sys.exit(main())
