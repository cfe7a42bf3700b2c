#!/usr/bin/python
"""Give a running Redis exactly the ACL users it should have, without a restart."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_acl
short_description: Apply ACL users to a running Redis, one ACL SETUSER each
description:
  - Connects to Redis over its unix socket as I(login_user), trying each of I(login_passwords)
    in turn (during a rotation the running Redis may still know only an older one).
  - Runs C(ACL SETUSER <name> <rules>) for every user of I(users), whose rules start with
    C(reset) so that each defines the user whole, and C(ACL DELUSER) for every other user but
    I(login_user).
  - Unlike C(ACL LOAD), which Redis 7.0 answers by closing every subscriber's connection,
    C(ACL SETUSER) keeps the connections of a user whose changed rules still allow what they
    do: the nodes' subscriptions survive a password rotation.
  - Reports a change when C(ACL LIST) differs before and after. Needs no Python package on
    the host: it speaks RESP itself.
options:
  socket:
    description: Path of Redis's unix socket.
    type: path
    required: true
  login_user:
    description: User to authenticate as; it needs the C(acl) commands.
    type: str
    default: default
  login_passwords:
    description: Passwords to try for I(login_user), in order.
    type: list
    elements: str
    required: true
    no_log: true
  users:
    description: Each user, a dict with C(name) and C(rules) (a list of ACL rules, C(reset) first).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
users:
  description: The users Redis has afterwards (ACL LIST), with password hashes.
  type: list
"""

import socket

from ansible.module_utils.basic import AnsibleModule


class RedisError(Exception):
    """An error reply of Redis."""


# What a RESP2 reply decodes to.
Reply = str | int | list | RedisError | None


class Resp:
    """The RESP2 protocol over one connection: commands out, replies in."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""

    def command(self, *args: str) -> Reply:
        out = b"*%d\r\n" % len(args)
        for arg in args:
            data = arg.encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(out)
        reply = self._reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data

    def _reply(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size).decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise ConnectionError(f"unexpected reply from Redis: {line!r}")

    def close(self) -> None:
        self.sock.close()


def login(conn: Resp, user: str, passwords: list[str]) -> None:
    for password in passwords:
        try:
            conn.command("AUTH", user, password)
            return
        except RedisError as exc:
            if not str(exc).startswith("WRONGPASS"):
                raise
    raise RedisError(f"none of the {len(passwords)} passwords given is {user}'s")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "required": True},
            "login_user": {"type": "str", "default": "default"},
            "login_passwords": {
                "type": "list",
                "elements": "str",
                "required": True,
                "no_log": True,
            },
            "users": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=False,
    )
    params = module.params
    wanted = {user["name"]: [str(rule) for rule in user["rules"]] for user in params["users"]}
    try:
        conn = Resp(params["socket"])
        try:
            login(conn, params["login_user"], params["login_passwords"])
            before = conn.command("ACL", "LIST")
            for name, rules in wanted.items():
                conn.command("ACL", "SETUSER", name, *rules)
            for line in before:
                name = line.split()[1]
                if name not in wanted and name != params["login_user"]:
                    conn.command("ACL", "DELUSER", name)
            after = conn.command("ACL", "LIST")
        finally:
            conn.close()
    except (OSError, RedisError) as exc:
        module.fail_json(msg=f"Cannot apply the ACL users at {params['socket']}: {exc}")
    module.exit_json(changed=before != after, users=after)


if __name__ == "__main__":
    main()
