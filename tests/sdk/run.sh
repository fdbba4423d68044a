#!/usr/bin/env bash
# The official Python SDKs (openai, anthropic, google-genai) driven through the
# real lantern binary to a local mock upstream. Loopback only.
#   LANTERN_BIN=path  use a prebuilt binary and skip `cargo build`
#   extra arguments   go to pytest (e.g. -k coach -x)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${LANTERN_BIN:-}" ]; then
  cargo build --quiet
fi
python3 -m pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt 2>&1 \
  | { grep -v "Running pip as the 'root' user" || true; }
exec python3 -m pytest -q tests/sdk "$@"
