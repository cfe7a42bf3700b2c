"""wsk's benchmark: wsk and the Node.js socket.io + Redis adapter cluster, side by side."""
