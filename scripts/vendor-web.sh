#!/usr/bin/env bash
# Copy what the live page loads from npm packages into the wsk package
# (server/wsk/static/), where it is committed: a deploy ships it inside the
# wheel and needs no Node, no CDN and no build step.
#
#   scripts/vendor-web.sh      npm ci in web/ (web/package-lock.json pins it), then copy
#
# Run it (make vendor) after changing web/package.json; commit what it changed.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix web --no-audit --no-fund --loglevel=error
static=server/wsk/static
dist=web/node_modules/socket.io-client/dist
version=$(node -p 'require("./web/node_modules/socket.io-client/package.json").version')
cp "$dist/socket.io.min.js" "$static/socket.io.min.js"
# the bundle's licence travels with it
cp web/node_modules/socket.io-client/LICENSE "$static/socket.io.LICENSE"
echo "vendored socket.io-client $version into $static"
