"""Real processes on free loopback ports, shared by the tests (tests/) and the benchmark (bench/).

- ``procs``: free ports, waiting, a child process with its log, redis-server,
  throwaway certificates;
- ``haproxy``: the HAProxy configuration of a local cluster (sticky cookie, the
  ``/wsk`` -> ``/`` rewrite, health checks), also written by ``scripts/demo-local.sh``.

The deployed configuration is the haproxy role's template, which this one follows.
"""
