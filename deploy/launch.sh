#!/usr/bin/env bash
# Builds and runs the mpirun command line for a cluster: the coordinator as rank 0 and one shard
# worker per NUMA node (of this machine, or of every host of a hostfile).
#
#   deploy/launch.sh --model DIR [--workers N] [--hostfile FILE] [--threads T] [--amx-tiles on|off]
#                    [--kv-prefault on|off] [--dry-run]
#                    [-- extra coordinator flags, e.g. --grpc-listen 0.0.0.0:50051 --kv-cache-gib 8]
#
# Local (no hostfile): N defaults to the NUMA nodes of this machine; with fewer cores than ranks
# it adds --oversubscribe. Hostfile: N defaults to the sum of the hosts' slots (NUMA nodes); ranks
# are spread by node and each worker binds itself to a NUMA node with hwloc.
#
# SIGINT or SIGTERM (Ctrl-C) stops the cluster cleanly through the coordinator; a second one stops
# mpirun at once. A script that starts this in the background should do so with `set -m`: bash
# otherwise starts background commands with SIGINT ignored, which no trap can undo.
set -euo pipefail
# The binaries are this checkout's; paths the caller gives (--model, --hostfile, a --placement plan
# after --) are relative to the caller's directory, where mpirun starts the ranks.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/bin"
MODEL="" WORKERS="" HOSTFILE="" THREADS="" AMX="" KV_PREFAULT="" DRY=0
EXTRA=()
# Options that take a value must get one (not the end of the line).
need_value() { [ $# -ge 2 ] || { echo "launch.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --model|--workers|--hostfile|--threads|--amx-tiles|--kv-prefault) need_value "$@" ;;
  esac
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --hostfile) HOSTFILE="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --amx-tiles) AMX="$2"; shift 2 ;;
    --kv-prefault) KV_PREFAULT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "launch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$MODEL" ] || { echo "launch.sh: --model DIR is required" >&2; exit 2; }
# shard_worker --amx_tiles: with --activation-dtype bf16 on CPUs with AMX, tiles (on) or vdpbf16ps (off).
case "$AMX" in
  ""|on|off) ;;
  *) echo "launch.sh: --amx-tiles must be on or off, got '$AMX'" >&2; exit 2 ;;
esac
# shard_worker --kv_prefault: write the KV cache at start-up (on, its default) or take its pages
# as blocks are first written (off).
case "$KV_PREFAULT" in
  ""|on|off) ;;
  *) echo "launch.sh: --kv-prefault must be on or off, got '$KV_PREFAULT'" >&2; exit 2 ;;
esac
# Counts are checked here: mpirun would be handed "-np 0" or "-np -1" (and --workers 0 divided
# by zero below). At most six digits keeps bash arithmetic far from overflow.
if [ -n "$WORKERS" ] && ! [[ "$WORKERS" =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "launch.sh: --workers must be a positive integer (shard workers to start), got '$WORKERS'" >&2; exit 2
fi
# As shard_worker --threads: 0 = the cores the plan gives each rank, at most 4096.
if [ -n "$THREADS" ] && { ! [[ "$THREADS" =~ ^[0-9]{1,4}$ ]] || [ "$((10#$THREADS))" -gt 4096 ]; }; then
  echo "launch.sh: --threads must be an integer 0..4096 (compute threads per worker, 0 = the plan's cores), got '$THREADS'" >&2; exit 2
fi
[ -z "$THREADS" ] || THREADS=$((10#$THREADS))
[ -z "$HOSTFILE" ] || { [ -f "$HOSTFILE" ] && [ -r "$HOSTFILE" ]; } || { echo "launch.sh: --hostfile $HOSTFILE is not a readable file" >&2; exit 2; }
[ -x "$BIN/coordinator" ] && [ -x "$BIN/shard_worker" ] || { echo "launch.sh: build first (bash $ROOT/deploy/build.sh)" >&2; exit 2; }

numa_nodes() {
  local n
  n=$(hwloc-calc --number-of numanode machine:0 2>/dev/null || true)
  [ -n "$n" ] && [ "$n" -gt 0 ] 2>/dev/null || n=$(lscpu -p=NODE 2>/dev/null | grep -v '^#' | sort -u | wc -l)
  [ "$n" -gt 0 ] 2>/dev/null || n=1
  echo "$n"
}

MPI=(mpirun)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
# Shared memory between local ranks; the single-copy mechanism needs ptrace rights containers lack.
MPI+=(--mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none)
# The coordinator's API key (--api-key's default) reaches rank 0 on whichever host it starts.
[ -n "${GLM_API_KEY:-}" ] && MPI+=(-x GLM_API_KEY)
PER_HOST=$(numa_nodes)
if [ -n "$HOSTFILE" ]; then
  # Host lines: not comments, not blank (spaces and tabs alone are blank). slots=N on a line = its
  # NUMA nodes, a whole number 1..4096; hosts without it count as this machine's. A bad value is
  # refused here: mpirun would get -np 0 or a negative count and answer with Open MPI internals.
  HOST_LINES=$(grep -v '^[[:space:]]*#' "$HOSTFILE" | grep -v '^[[:space:]]*$' || true)
  [ -n "$HOST_LINES" ] || { echo "launch.sh: --hostfile $HOSTFILE names no host (only blank or comment lines)" >&2; exit 2; }
  BAD_SLOTS=$(printf '%s\n' "$HOST_LINES" | awk '{for(i=2;i<=NF;i++) if ($i ~ /^slots=/) {v=substr($i,7); if (v !~ /^[1-9][0-9]*$/ || length(v) > 4 || v+0 > 4096) {print $0; exit}}}')
  [ -z "$BAD_SLOTS" ] || { echo "launch.sh: --hostfile $HOSTFILE: slots must be a whole number 1..4096 in: $BAD_SLOTS" >&2; exit 2; }
  HOSTS=$(printf '%s\n' "$HOST_LINES" | wc -l)
  SLOTS=$(printf '%s\n' "$HOST_LINES" | awk -v d="$PER_HOST" '{n=d; for(i=2;i<=NF;i++) if ($i ~ /^slots=/) n=substr($i,7)+0; s+=n} END {print s}')
  : "${WORKERS:=${SLOTS:-$(( PER_HOST * HOSTS ))}}"
  MPI+=(--hostfile "$HOSTFILE" --map-by node --bind-to none --oversubscribe)
else
  : "${WORKERS:=$PER_HOST}"
  MPI+=(--bind-to none)
  if [ "$(( WORKERS + 1 ))" -gt "$(nproc)" ]; then MPI+=(--oversubscribe); fi
  if [ -z "$THREADS" ]; then THREADS=$(( $(nproc) / WORKERS )); [ "$THREADS" -ge 1 ] || THREADS=1; fi
fi
WORKER_ARGS=()
[ -n "$THREADS" ] && WORKER_ARGS+=(--threads "$THREADS")
[ "$AMX" = on ] && WORKER_ARGS+=(--amx_tiles=true)
[ "$AMX" = off ] && WORKER_ARGS+=(--amx_tiles=false)
[ "$KV_PREFAULT" = on ] && WORKER_ARGS+=(--kv_prefault=true)
[ "$KV_PREFAULT" = off ] && WORKER_ARGS+=(--kv_prefault=false)
CMD=("${MPI[@]}" -np 1 "$BIN/coordinator" --model "$MODEL" "${EXTRA[@]}" : -np "$WORKERS" "$BIN/shard_worker" "${WORKER_ARGS[@]}")
echo "+ ${CMD[*]}" >&2
[ "$DRY" -eq 1 ] && exit 0

# Stopping: mpirun answers SIGINT/SIGTERM by sending SIGTERM and soon SIGKILL to every rank, and
# exits 1 before the coordinator has shut the workers down. So this script stays mpirun's parent
# and hands the first SIGINT/SIGTERM (Ctrl-C, quickstart.sh, systemd's KillSignal) to the
# coordinator rank, which stops serving, shuts every worker down and exits 0; mpirun then ends
# with it. A second signal (or no local coordinator: rank 0 on another host) goes to mpirun.
COORDINATOR_EXE=$(readlink -f "$BIN/coordinator")
# The coordinator rank among mpirun's descendants (Open MPI starts local ranks as its children).
coordinator_pid() {
  local queue=("$MPI_PID") p c
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    for c in $(pgrep -P "$p" 2>/dev/null); do
      if [ "$(readlink -f "/proc/$c/exe" 2>/dev/null)" = "$COORDINATOR_EXE" ]; then echo "$c"; return 0; fi
      queue+=("$c")
    done
  done
  return 1
}
SIGNALS=0
on_signal() {
  SIGNALS=$((SIGNALS + 1))
  local pid
  if [ "$SIGNALS" -eq 1 ] && pid=$(coordinator_pid); then
    echo "launch.sh: SIG$1: stopping the coordinator (pid $pid), which shuts the workers down; SIG$1 again stops mpirun at once" >&2
    kill -INT "$pid" 2>/dev/null || true
  else
    echo "launch.sh: SIG$1: stopping mpirun (pid $MPI_PID) and every rank" >&2
    kill -"$1" "$MPI_PID" 2>/dev/null || true
  fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
# Job control gives mpirun (and the ranks, which Open MPI puts in groups of their own) a process
# group apart from this script's, so a terminal's Ctrl-C reaches only this script.
set -m
"${CMD[@]}" &
MPI_PID=$!
set +m
# A trapped signal interrupts `wait`: wait again until mpirun itself has ended, for its status.
set +e
while :; do
  seen=$SIGNALS
  wait "$MPI_PID"
  rc=$?
  [ "$SIGNALS" -ne "$seen" ] || break
done
exit "$rc"
