#!/usr/bin/env bash
# Run the test suite; pytest's exit code 5 (no tests collected) is a failure, not a pass.
set -uo pipefail
python=${1:-.venv/bin/python}
shift || true
# Two workers (or fewer cores): each test file runs in one worker (--dist loadfile keeps its
# module fixtures together), with one torch thread each, since two workers on two cores with
# torch's default threads oversubscribe the CPU and spin (a forward pass 20x slower, measured).
workers=$(nproc 2>/dev/null || echo 1)
((workers > 2)) && workers=2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$python" -m pytest -q -n "$workers" --dist loadfile --durations=25 "$@"
rc=$?
if [[ $rc == 5 ]]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit $rc
