#!/usr/bin/env bash
# Builds and tests the Bazel targets (BUILD, tests/BUILD) offline.
#
#   bash tools/bazel_test.sh                              # bazel test //...
#   bash tools/bazel_test.sh //tests:distill/test_losses  # target patterns and bazel flags pass through
#
# Installs Debian's bazel-bootstrap (Bazel 4.2.3) when `bazel` is missing, and the
# venv as the README does when .venv is missing. Nothing is downloaded by Bazel:
# WORKSPACE points its own repositories at third_party/bazel and Python at .venv.
# Ends with one line 'bazel: N passed, N failed, N skipped' (pytest test cases).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bazel >/dev/null 2>&1; then
    echo "bazel_test.sh: installing Debian's bazel-bootstrap" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bazel-bootstrap >/dev/null
fi
if [ ! -d /usr/share/bazel/platforms ]; then
    echo "bazel_test.sh: /usr/share/bazel/platforms is missing: WORKSPACE expects Debian's bazel-bootstrap" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "bazel_test.sh: creating .venv as the README does" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q -e ".[test]"
fi

# Target patterns from the arguments, //... when there are only flags or none.
args=("$@")
pattern_given=false
for arg in "${args[@]+"${args[@]}"}"; do
    case "$arg" in -*) ;; *) pattern_given=true ;; esac
done
$pattern_given || args+=("//...")

flags=()
if [ "${CI:-}" = true ]; then
    flags+=(--config=ci)
    trap 'bazel shutdown >/dev/null 2>&1 || true' EXIT  # no server left behind a CI run
fi

bep="$(mktemp)"
status=0
bazel test "${flags[@]+"${flags[@]}"}" --build_event_json_file="$bep" "${args[@]}" || status=$?
.venv/bin/python tools/bazel/test_summary.py "$bep" || true
rm -f "$bep"
exit "$status"
