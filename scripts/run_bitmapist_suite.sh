#!/usr/bin/env bash
# Run a copy of bitmapist's own test suite, as it is, against bitstat's drop-in.
#
# usage: scripts/run_bitmapist_suite.sh TESTS_DIR [-- PYTEST_ARGS...]
#
# bitstat's own test run already holds bitmapist's newest suite, vendored with its import lines
# pointed at the drop-in (tests/bitmapist_upstream; its README.md says where each file comes
# from). This script is for another copy, such as the test/ folder of a newer bitmapist
# checkout, taken unchanged: it runs in a temporary directory (removed at the end) where
# `import bitmapist` and `import bitmapist.cohort` resolve to the drop-in, through a
# conftest.py shim above the tests that calls install(). The suite's own conftest starts a
# private server ($BITMAPIST_REDIS_SERVER_PATH, default: bitstat's embedded valkey-server) on
# a free port, so no existing database is touched. Its bitmapist-server variant is skipped
# unless that server is installed (the drop-in's bit operations need Lua, which it lacks).
set -euo pipefail

PYTHON="${PYTHON:-python}"
if [[ $# -eq 0 || "$1" == "--" ]]; then
    echo "usage: $0 TESTS_DIR [-- PYTEST_ARGS...]" >&2
    echo "(bitmapist's newest suite is vendored: python -m pytest tests/bitmapist_upstream)" >&2
    exit 2
fi
TESTS_DIR="$1"
shift
[[ $# -gt 0 && "$1" == "--" ]] && shift

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/run"
cp -r "$TESTS_DIR" "$WORK/run/test"

cat > "$WORK/run/conftest.py" <<'EOF'
# Shim: `import bitmapist` and `import bitmapist.cohort` resolve to bitstat's drop-in.
from bitstat.compat import bitmapist as _dropin

_dropin.install()


def pytest_report_header(config):
    import bitmapist

    return [f"bitmapist is {bitmapist.__name__} ({bitmapist.__file__})"]
EOF

if [[ -z "${BITMAPIST_REDIS_SERVER_PATH:-}" ]]; then
    BITMAPIST_REDIS_SERVER_PATH="$("$PYTHON" -c \
        'from bitstat.embedded import find_server_binary; print(find_server_binary())')"
    export BITMAPIST_REDIS_SERVER_PATH
fi
if [[ -z "${BITMAPIST_REDIS_PORT:-}" ]]; then
    BITMAPIST_REDIS_PORT="$("$PYTHON" -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    export BITMAPIST_REDIS_PORT
fi

cd "$WORK/run"
"$PYTHON" -m pytest -p no:cacheprovider -rs --rootdir "$WORK/run" test "$@"
