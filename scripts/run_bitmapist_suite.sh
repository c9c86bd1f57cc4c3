#!/usr/bin/env bash
# Run bitmapist's own test suite against bitstat's drop-in (bitstat.compat.bitmapist).
#
# usage: scripts/run_bitmapist_suite.sh [TESTS_DIR] [-- PYTEST_ARGS...]
#
# The tests are bitmapist's, never committed here. They are taken, in this order, from
# TESTS_DIR (a copy of the test/ folder of github.com/Doist/bitmapist), from the sdist of
# bitmapist $BITMAPIST_VERSION on PyPI (3.119's sdist ships no tests), or from the GitHub
# tarball of that tag. Everything happens in a temporary directory that is removed at the end.
# `import bitmapist` resolves to the drop-in through a conftest.py shim above the tests.
# The suite's own conftest starts a private server ($BITMAPIST_REDIS_SERVER_PATH, default:
# bitstat's embedded valkey-server) on a free port, so no existing database is touched.
# Its bitmapist-server variant is skipped unless that server is installed.
set -euo pipefail

VERSION="${BITMAPIST_VERSION:-3.119}"
PYTHON="${PYTHON:-python}"
TESTS_DIR=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
    TESTS_DIR="$1"
    shift
fi
[[ $# -gt 0 && "$1" == "--" ]] && shift

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/run"

if [[ -n "$TESTS_DIR" ]]; then
    cp -r "$TESTS_DIR" "$WORK/run/test"
else
    "$PYTHON" -m pip download "bitmapist==$VERSION" --no-binary :all: --no-deps \
        -d "$WORK/sdist" -q
    tar xzf "$WORK"/sdist/bitmapist-*.tar.gz -C "$WORK/sdist"
    found="$(find "$WORK/sdist" -type d \( -name test -o -name tests \) | head -n 1)"
    if [[ -n "$found" ]]; then
        cp -r "$found" "$WORK/run/test"
    else
        echo "the sdist of bitmapist $VERSION has no tests; trying GitHub" >&2
        for tag in "v$VERSION" "$VERSION"; do
            url="https://codeload.github.com/Doist/bitmapist/tar.gz/refs/tags/$tag"
            if curl -fsSL --max-time 30 "$url" -o "$WORK/gh.tar.gz" 2>/dev/null; then
                tar xzf "$WORK/gh.tar.gz" -C "$WORK"
                cp -r "$WORK"/bitmapist-*/test "$WORK/run/test"
                break
            fi
        done
        if [[ ! -d "$WORK/run/test" ]]; then
            echo "cannot fetch bitmapist's tests (no network to GitHub?);" \
                "pass a copy of its test/ folder as the first argument" >&2
            exit 2
        fi
    fi
fi

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
