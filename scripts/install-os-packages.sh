#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that wsk's tools and tests use, when missing.
# Each argument is PACKAGE or PACKAGE:COMMAND; with a COMMAND, a machine that
# already has that command (Node.js from elsewhere, say) is left as it is.
# Runs apt-get as root, or through sudo.
set -euo pipefail

missing=()
for wanted in "$@"; do
    package=${wanted%%:*}
    command=${wanted#*:}
    if [ "$command" != "$wanted" ]; then
        command -v "$command" >/dev/null 2>&1 && continue
    fi
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "installing ${missing[*]} needs root or sudo" >&2; exit 1; }
    sudo=(sudo)
fi
echo "installing OS packages: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
