"""The okok heartbeat each node broadcasts to every client of the cluster."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import random
import socket
import struct
import time
from typing import Any

import socketio

from wsk.metrics import Metrics

log = logging.getLogger("wsk.heartbeat")

SIOCGIFADDR = 0x8915


def heartbeat_payload(node_name: str, host_ip: str) -> dict[str, Any]:
    """What one heartbeat says."""
    return {
        "node": node_name,
        "host": host_ip,
        "text": f"I am the host: {host_ip}. I am healthy.",
        "time": time.time(),
    }


def run_heartbeat(
    sio: socketio.Server,
    node_name: str,
    host_ip: str,
    interval: float,
    jitter: float,
    metrics: Metrics,
) -> None:
    """Broadcast ``okok`` every ``interval`` plus up to ``jitter`` seconds, forever."""
    while True:
        sio.sleep(interval + random.uniform(0, jitter))
        try:
            sio.emit("okok", heartbeat_payload(node_name, host_ip))
        except ConnectionError as exc:  # Redis did not take it (wsk.manager.NotDelivered)
            log.debug("heartbeat not sent: %s", exc)
            continue
        except Exception:
            log.exception("heartbeat failed")
            continue
        metrics.heartbeats.inc()


def private_ipv4(peer: str | None = None) -> str:
    """This host's private IPv4 address, as the other machines of the cluster see it.

    First the address the host name resolves to, as the seed did. Debian maps the
    host name to 127.0.1.1, so when that is a loopback address: the source address
    of the route to ``peer`` (the Redis host: connecting a UDP socket picks a route
    and sends nothing), then the address of the interface that carries the default
    route. The loopback address when nothing better is known.
    """
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        address = "127.0.0.1"
    candidates = (_source_address_towards(peer), _default_route_ipv4())
    return next((c for c in candidates if c and not _is_loopback(c)), address)


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _source_address_towards(peer: str | None) -> str | None:
    if not peer:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 9))  # a UDP connect sends nothing
            return probe.getsockname()[0]
    except OSError:
        return None


def _default_route_ipv4() -> str | None:
    interface = _default_route_interface()
    return _interface_ipv4(interface) if interface else None


def _default_route_interface() -> str | None:
    try:
        with open("/proc/net/route") as routes:
            next(routes, None)
            for line in routes:
                fields = line.split()
                if len(fields) > 1 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def _interface_ipv4(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])
