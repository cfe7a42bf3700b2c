"""wsk's Engine.IO transport: HTTP, long-polling and websockets, lean per client and bounded.

From the socket up:

- ``http``: eventlet's HTTP server with a deadline per request, a 503 when the
  node is full, and connections a websocket can take over;
- ``frames``: RFC 6455, frames in and out (plain computation on bytes);
- ``packets``: Engine.IO packets in, without python-engineio's JSON guessing;
- ``websocket``: the websocket transport, with no greenlet per idle client;
- ``polling``: long-polling POSTs, checked before anything is decoded;
- ``engine``: the Engine.IO server and its sessions, which tie it together;
- ``internals``: the one module that touches private names of python-engineio,
  python-socketio and eventlet, and checks their versions at import.

docs/architecture.md draws the whole node.
"""
