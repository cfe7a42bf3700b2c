"""The HAProxy configuration of a local cluster: the tests', the benchmark's and demo-local's.

It is the haproxy role's shape on loopback: the public prefix ``/wsk`` rewritten
to the nodes' ``/``, a sticky cookie inserted by HAProxy, ``/healthz`` checks,
redispatch. What differs between its users are parameters: the cookie (off for
the tests' non-sticky control), the balance, maxconn, the timeouts.

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

defaults
    mode http
    maxconn {maxconn}
    timeout connect {connect_timeout}
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    option redispatch
    retries 3

frontend public
    bind {bind}
    http-request deny deny_status 404 unless {{ path /wsk }} || {{ path_beg /wsk/ }}
    default_backend wsk

backend wsk
    balance {balance}
    option httpchk GET /healthz
    http-check expect status 200
    http-request replace-path ^/wsk/?(.*) /\\1
{cookie}{servers}
"""


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
    connect_timeout: str = "2s",
    check: str = "inter 300ms fall 2 rise 2",
) -> str:
    """The configuration text."""
    cookie_line = f"    cookie {cookie} insert indirect nocache httponly\n" if sticky else ""
    lines = "".join(
        f"    server {s.name} {s.host}:{s.port} check {check}"
        + (f" cookie {s.name}" if sticky else "")
        + "\n"
        for s in servers
    )
    return TEMPLATE.format(
        bind=bind,
        balance=balance,
        maxconn=maxconn,
        connect_timeout=connect_timeout,
        cookie=cookie_line,
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
