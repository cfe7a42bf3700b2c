"""Command-line entry points: wsk-server, wsk-client, wsk-emit."""
