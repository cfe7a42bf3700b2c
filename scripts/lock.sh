#!/usr/bin/env bash
# Write constraints.txt: the exact version of every Python package that wsk's
# virtualenv (.venv: the package, its test and benchmark extras, the deployment
# tools) and a node's wheelhouse install, as the suite tested them.
#
#   scripts/lock.sh          resolve afresh in a scratch virtualenv, then write the file
#
# make installs .venv with `pip install -c constraints.txt`, and the socketio
# role's wheelhouse downloads with the same constraints, so that a deploy next
# month installs what CI tested. tests/test_config.py fails when .venv holds a
# package the file does not pin.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --upgrade pip
"$scratch/venv/bin/pip" install --quiet '.[test,bench]' -r requirements-dev.txt
{
    echo "# Every Python package of .venv and of a node's wheelhouse, as tested."
    echo "# Written by scripts/lock.sh; do not edit by hand."
    "$scratch/venv/bin/pip" freeze --exclude wsk | sort -f
    # what a node's Python older than 3.11.3 (Debian 12's 3.11.2) needs beside them
    echo "async-timeout==5.0.1"
} >constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
