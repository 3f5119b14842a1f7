#!/usr/bin/env bash
# CI time, like for like (issue 14): before wave 2 (main at 0c83775, 45 test files) CI took
# 528 s in all (`make setup`, then `make test` = lint + pytest). This runs the lint and, with
# the flags `make unit` uses, the test files that existed at that commit (by name; all still
# exist) on the current code, and then every test file, timing each, so the old set can be
# set beside 528 s and the new tests' share is visible. Run it on a quiet machine after
# `make setup`; setup time is printed by .ci/run and does not depend on the tests.
#
#   tests/bench/ci_time.sh            lint, the pre-wave-2 test set, then every test file
#   tests/bench/ci_time.sh --old      lint and the pre-wave-2 test set only
#   BASE=<commit> tests/bench/ci_time.sh --old    another base commit's test files
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BASE:-0c83775}
BIN=${VENV:-.venv}/bin
export MILO_DEMO_MODELS=${DEMO:-models/demo}

git cat-file -e "$BASE^{commit}" 2>/dev/null \
    || { echo "commit $BASE is not in this clone (git fetch --unshallow?)" >&2; exit 2; }
mapfile -t old < <(git ls-tree -r --name-only "$BASE" tests | grep -E '(^|/)test_[^/]*\.py$')
present=()
for f in "${old[@]}"; do [ -f "$f" ] && present+=("$f"); done
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $BASE had ${#old[@]} test files," \
    "${#present[@]} still here; now $(git ls-files tests | grep -cE '(^|/)test_[^/]*\.py$')"

make -s demo checkov >/dev/null
t() { local start=$SECONDS; "$@" >&2 || echo "(exit $?)" >&2; echo $((SECONDS - start)); }
lint=$(t make -s lint)
old_s=$(t "$BIN/python" -m pytest -q -rs --durations=25 -p no:cacheprovider "${present[@]}")
echo "lint ${lint}s, pre-wave-2 tests ${old_s}s: $((lint + old_s))s + setup, against 528s" \
    "then (setup + lint + tests)"
if [ "${1:-}" != --old ]; then
    all_s=$(t "$BIN/python" -m pytest -q -rs --durations=25 -p no:cacheprovider)
    echo "every test file: ${all_s}s (pre-wave-2 set: ${old_s}s)"
fi
