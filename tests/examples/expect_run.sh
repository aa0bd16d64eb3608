#!/usr/bin/env bash
# Runs a program and checks how it ended: its exit status, text its output (stdout and stderr
# together) must contain, and files that must or must not exist afterwards. For the examples'
# bad-option and failure tests under ctest.
# Usage: expect_run.sh [--status N] [--output TEXT]... [--absent FILE]... [--present FILE]...
#                      [--max-seconds S] -- PROGRAM ARGS...
set -uo pipefail
status=0
max_seconds=
outputs=()
absent=()
present=()
while (($#)); do
  case "$1" in
    --status) status=$2; shift 2 ;;
    --output) outputs+=("$2"); shift 2 ;;
    --absent) absent+=("$2"); shift 2 ;;
    --present) present+=("$2"); shift 2 ;;
    --max-seconds) max_seconds=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "expect_run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for f in "${absent[@]}"; do rm -rf -- "$f"; done
start=$SECONDS
out=$("$@" 2>&1)
rc=$?
elapsed=$((SECONDS - start))
printf '%s\n' "$out" | tail -n 30
failed=0
if [ "$rc" -ne "$status" ]; then echo "FAILED: exit status $rc, expected $status"; failed=1; fi
for t in "${outputs[@]}"; do
  if ! grep -qF -- "$t" <<<"$out"; then echo "FAILED: the output lacks: $t"; failed=1; fi
done
for f in "${absent[@]}"; do
  if [ -e "$f" ]; then echo "FAILED: $f exists"; failed=1; fi
done
for f in "${present[@]}"; do
  if [ ! -e "$f" ]; then echo "FAILED: $f does not exist"; failed=1; fi
done
if [ -n "$max_seconds" ] && [ "$elapsed" -gt "$max_seconds" ]; then
  echo "FAILED: took $elapsed s, more than $max_seconds"; failed=1
fi
exit "$failed"
