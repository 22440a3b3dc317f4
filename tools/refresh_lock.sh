#!/usr/bin/env bash
# Re-resolve every requirements file in a brand-new virtual environment and rewrite
# requirements.lock with the exact versions pip chose; prints what changed.
#   tools/refresh_lock.sh            (then run the tests: .ci/run, and commit the lock)
# torch keeps its pin (requirements.txt); the lock drops local labels such as +cpu, so
# torch==2.13.0 also admits a CUDA build of 2.13.0.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m venv "$tmp/venv"
echo "resolving in a fresh venv (a few minutes)..." >&2
"$tmp/venv/bin/pip" install -q -r requirements-test.txt -r requirements-cuda.txt >&2
{
    echo "# Exact versions of every dependency, resolved by tools/refresh_lock.sh in a fresh venv"
    echo "# on Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version(), platform.machine())')."
    echo "# A pip constraints file: pip install -c requirements.lock -r requirements.txt -e ."
    "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^fg3dgs' \
        | sed -E 's/^([^=]+==[^+]+)\+.*$/\1/' | LC_ALL=C sort -f
} > "$tmp/lock"
if [ -f requirements.lock ]; then
    changes=$(diff <(grep -v '^#' requirements.lock) <(grep -v '^#' "$tmp/lock") | grep '^[<>]' || true)
    if [ -z "$changes" ]; then echo "requirements.lock: no change"; else echo "$changes"; fi
fi
mv "$tmp/lock" requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
