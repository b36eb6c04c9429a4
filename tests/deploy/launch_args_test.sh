#!/usr/bin/env bash
# deploy/launch.sh rejects bad counts and values before building an mpirun line: exit 2, a message
# naming the option and the value, and no "-np" printed; --amx-tiles and --kv-prefault reach the
# workers' flags.
# Usage: launch_args_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
fails=0
expect_rejected() {
  local want="$1"; shift
  local out rc
  out=$(bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" "$@" --dry-run 2>&1); rc=$?
  if [ "$rc" -ne 2 ] || [[ "$out" != *"$want"* ]] || [[ "$out" == *"-np"* ]]; then
    echo "FAIL: launch.sh $* -> exit $rc, wanted 2 and '$want':"; echo "$out"; fails=$((fails + 1))
  else
    echo "ok: launch.sh $* -> $out"
  fi
}
expect_rejected "--workers must be a positive integer" --workers 0
expect_rejected "got '-1'" --workers -1
expect_rejected "got 'two'" --workers two
expect_rejected "got '1e3'" --workers 1e3
expect_rejected "got '99999999999999999999'" --workers 99999999999999999999
expect_rejected "--threads must be an integer 0..4096" --threads -1
expect_rejected "got '5000'" --threads 5000
expect_rejected "got 'x'" --threads x
expect_rejected "--hostfile /nonexistent/hosts is not a readable file" --hostfile /nonexistent/hosts
# Host files: slot counts that would reach mpirun as -np 0 / negative / 1e+20, a file naming no
# host, a directory.
HF=$(mktemp -d)
trap 'rm -rf "$HF"' EXIT
for bad in abc "" -3 0 99999999999999999999 4097; do
  printf 'nodeA slots=%s\n' "$bad" > "$HF/hosts"
  expect_rejected "slots must be a whole number 1..4096 in: nodeA slots=$bad" --hostfile "$HF/hosts"
done
printf '# comment only\n  \n\t\n' > "$HF/hosts"
expect_rejected "names no host" --hostfile "$HF/hosts"
expect_rejected "--hostfile $HF is not a readable file" --hostfile "$HF"
# Blank lines of spaces or tabs are not hosts; slots add up.
printf '  \n\t\nnodeA slots=2\nnodeB slots=3\n' > "$HF/hosts"
out=$(bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --hostfile "$HF/hosts" --dry-run 2>&1)
[[ "$out" == *"-np 5 "*"/build/bin/shard_worker"* ]] || { echo "FAIL: two hosts with 2 + 3 slots -> $out"; fails=$((fails + 1)); }
# Relative paths are the caller's (launch.sh used to cd to the repository first, so ./hosts was
# "not a readable file" and a relative --model was looked up in the checkout); the binaries are
# the checkout's, by absolute path.
out=$(cd "$HF" && bash "$REPO/deploy/launch.sh" --model mymodel --hostfile hosts --dry-run 2>&1); rc=$?
if [ "$rc" -ne 0 ] || [[ "$out" != *"--hostfile hosts"* ]] || [[ "$out" != *"$REPO/build/bin/coordinator --model mymodel"* ]]; then
  echo "FAIL: relative --hostfile / --model from $HF -> exit $rc: $out"; fails=$((fails + 1))
else
  echo "ok: relative paths from the caller's directory -> $out"
fi
expect_rejected "--amx-tiles must be on or off, got 'maybe'" --amx-tiles maybe
expect_rejected "--kv-prefault must be on or off, got 'maybe'" --kv-prefault maybe
for option in amx-tiles kv-prefault; do
  for v in on off; do
    flag="--${option//-/_}=$([ "$v" = on ] && echo true || echo false)"
    out=$(bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --workers 1 "--$option" "$v" --dry-run 2>&1); rc=$?
    if [ "$rc" -ne 0 ] || [[ "$out" != *"shard_worker"*"$flag"* ]]; then
      echo "FAIL: --$option $v -> exit $rc, wanted the workers to get $flag:"; echo "$out"; fails=$((fails + 1))
    else
      echo "ok: --$option $v -> workers get $flag"
    fi
  done
done
out=$(bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --workers 2>&1); rc=$?
[ "$rc" -eq 2 ] && [[ "$out" == *"--workers needs a value"* ]] || { echo "FAIL: --workers without a value -> $rc: $out"; fails=$((fails + 1)); }
# quickstart.sh checks its options before installing and building anything.
for args in "--workers|needs a value" "--workers 0|--workers must be 1..999" "--http-port 70000|a port must be 1..65535" \
            "--grpc-port x|got 'x'" "--grpc-port 8000|must differ"; do
  want=${args#*|}
  out=$(bash "$REPO/deploy/quickstart.sh" ${args%%|*} 2>&1); rc=$?
  if [ "$rc" -ne 2 ] || [[ "$out" != *"$want"* ]]; then
    echo "FAIL: quickstart.sh ${args%%|*} -> exit $rc, wanted 2 and '$want': $out"; fails=$((fails + 1))
  else
    echo "ok: quickstart.sh ${args%%|*} -> $out"
  fi
done
[ "$fails" -eq 0 ] && echo PASSED
exit "$fails"
