#!/usr/bin/env bash
# Python conformance suite: proves kvkeep-emulator wire-compatible with the official Azure Key Vault
# Python SDK (azure-keyvault-secrets/-keys/-certificates, pinned in tests/conformance/requirements.txt).
# Creates or refreshes .venv (quick when the requirements are unchanged), builds the emulator, and runs
# pytest against it. Extra arguments go to pytest (e.g. `-k backup -x`). Exit code is pytest's, except
# that "no tests collected" (pytest exit 5) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/python-env.sh

cargo build --quiet -p kvkeep-emulator
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export KVKEEP_EMULATOR_BIN="${KVKEEP_EMULATOR_BIN:-$target_dir/debug/kvkeep-emulator}"

status=0
.venv/bin/python -m pytest tests/conformance -q -p no:cacheprovider "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "conformance: pytest collected no tests; treating as failure" >&2
    exit 1
fi
exit "$status"
