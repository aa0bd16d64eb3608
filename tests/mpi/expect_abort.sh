#!/usr/bin/env bash
# Runs an MPI job that must fail: passes if it ends within the time limit, with a non-zero status,
# and its output holds the expected text (every part of it, when parts are separated by '|').
# Usage: expect_abort.sh SECONDS EXPECTED-TEXT COMMAND [ARGS...]
set -uo pipefail
limit=$1 expected=$2
shift 2
start=$(date +%s)
output=$(timeout --kill-after=5 "$limit" "$@" 2>&1)
status=$?
elapsed=$(($(date +%s) - start))
printf '%s\n' "$output"
echo "--- exit status $status after $elapsed s"
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "FAILED: the job was still running after $limit s (a hang)"; exit 1
fi
if [ "$status" -eq 0 ]; then
  echo "FAILED: the job exited with status 0"; exit 1
fi
IFS='|' read -r -a parts <<<"$expected"
for part in "${parts[@]}"; do
  if ! grep -qF -- "$part" <<<"$output"; then
    echo "FAILED: the output does not contain: $part"; exit 1
  fi
done
echo "PASSED: ended with status $status in $elapsed s, naming the rank and the error"
