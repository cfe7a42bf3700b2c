#!/usr/bin/env bash
# What the demo cluster needs before its containers start (Molecule's
# dependency step): the Docker engine and the systemd base image, then the
# throwaway TLS material that inventory/demo reads.
set -euo pipefail
here=$(dirname "$0")
"$here/base-image.sh"
"$here/demo-certificates.sh" "$here/../.demo-tls"
