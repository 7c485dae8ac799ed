#!/usr/bin/env bash
# Runs jaxssl as N cooperating processes on this machine, joined by jax.distributed over localhost,
# each with D (fake) CPU devices: the multi-host code path (per-process data slices, global arrays,
# collective checkpoints) without a cluster.
#
#   launch/local.sh [--dry-run] NUM_PROCESSES DEVICES_PER_PROCESS [jaxssl.main flags ...]
#   launch/local.sh 2 2 --config=configs/simclr.py:quick --workdir=/tmp/run
#
# Logs go to <workdir>/process_<i>.log; the script exits non-zero if any process fails.
set -euo pipefail
dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
num_processes=$1 devices=$2
shift 2
workdir=$(printf '%s\n' "$@" | sed -n 's/^--workdir=//p' | tail -n 1)
if [ -z "$workdir" ]; then
  echo "error: pass --workdir=DIR (every process must share it)" >&2
  exit 2
fi
port=${JAXSSL_COORDINATOR_PORT:-$((20000 + RANDOM % 20000))}

pids=()
for ((i = 0; i < num_processes; i++)); do
  cmd=(env "XLA_FLAGS=--xla_force_host_platform_device_count=$devices" JAX_PLATFORMS=cpu
       python -m jaxssl.main "$@" "--coordinator_address=127.0.0.1:$port"
       "--num_processes=$num_processes" "--process_id=$i")
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "${cmd[@]}"; printf '> %q\n' "$workdir/process_$i.log"
    continue
  fi
  mkdir -p "$workdir"
  "${cmd[@]}" > "$workdir/process_$i.log" 2>&1 &
  pids+=($!)
done
[ "$dry_run" = 1 ] && exit 0

status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; see $workdir/process_$i.log" >&2
    status=1
  fi
done
[ "$status" = 0 ] && tail -n 4 "$workdir/process_0.log"
exit $status
