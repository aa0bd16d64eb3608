#!/usr/bin/env bash
# Runs an example with --out set to a directory whose name holds a quote, spaces, `$(...)` and
# `;`: a name that runs commands if it ever reaches a shell. Checks that the example succeeds,
# that the files it should write are in that directory, and that the commands the name holds
# did not run (they would create marker files in the working directory).
# Usage: hostile_out_dir.sh WORKDIR EXPECTED_FILE... -- PROGRAM ARGS...
set -uo pipefail
work=$1
shift
expected=()
while (($#)) && [ "$1" != "--" ]; do expected+=("$1"); shift; done
shift
rm -rf -- "$work"
mkdir -p -- "$work"
cd -- "$work" || exit 1
# Even quote count, so that a shell would parse it: 'it' s $(touch injected_a) ; touch injected_b ; echo ''
dir="it's \$(touch injected_a) ; touch injected_b ; echo '"
"$@" --out "$dir"
rc=$?
failed=0
if [ "$rc" -ne 0 ]; then echo "FAILED: exit status $rc"; failed=1; fi
for m in injected_a injected_b; do
  if [ -e "$m" ]; then echo "FAILED: $m exists: the directory name was run by a shell"; failed=1; fi
done
for f in "${expected[@]}"; do
  if [ ! -s "$dir/$f" ]; then echo "FAILED: $dir/$f was not written"; failed=1; fi
done
ls -la -- "$dir"
exit "$failed"
