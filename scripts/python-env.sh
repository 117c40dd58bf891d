#!/usr/bin/env bash
# Creates or refreshes .venv with the pinned Python test dependencies; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=tests/conformance/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
