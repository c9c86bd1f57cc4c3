#!/usr/bin/env bash
# The client-facing tests on the newest redis-py. The test extras pull in bitmapist, which pins
# redis-py below 6, so the main suite runs on redis-py 5; a plain `pip install bitstat` gets
# the newest. This runs the tests that lean on redis-py most (retries, timeouts, errors,
# exactly-once, asyncio, cluster redirects, the trk drop-in's writes, a server that restarted
# with less than it had, the pool of a write refused a connection made again) in a venv of its
# own, without bitmapist: on the embedded server and the tests' cluster (the system Redis, when
# BITSTAT_TEST_REDIS_URL names it, is the main suite's third backend: the same protocol, and a
# third of this run's time), and of test_errors.py the connection errors alone (its other
# tests check events and queries, before redis-py is reached).
#   scripts/test-newest-redis-py.sh [VENV_DIR]    (default: a temp dir, removed after)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-}
if [[ -z $venv ]]; then
    venv=$(mktemp -d "${TMPDIR:-/tmp}/bitstat-redis-py.XXXXXX")
    trap 'rm -rf "$venv"' EXIT
fi
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root" redis \
    pytest pytest-xdist hypothesis httpx numpy
echo "redis-py: $("$venv/bin/python" -c 'import redis; print(redis.__version__)')"
cd "$root"
set +e
env -u BITSTAT_TEST_REDIS_URL "$venv/bin/python" -m pytest -n auto -q -p no:cacheprovider \
    tests/test_aio.py tests/test_errors.py::test_connection_errors tests/test_timeouts.py \
    tests/test_all_or_nothing.py tests/test_exactly_once.py tests/test_faults.py \
    tests/test_numbering_overlap.py tests/test_queue.py tests/test_track_ahead.py \
    tests/test_compat_trk.py tests/test_cluster_topology.py tests/test_restart_loss.py \
    tests/test_parts.py
rc=$?
set -e
if [[ $rc == 5 ]]; then
    echo "no tests ran (pytest exit 5): that is a failure" >&2
    exit 1
fi
exit "$rc"
