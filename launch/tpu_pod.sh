#!/usr/bin/env bash
# Runs jaxssl on a Cloud TPU VM, one host or a pod slice, with gcloud: create the TPU, copy this
# checkout to every worker, install, start the same command on all workers at once, follow it,
# delete the TPU.
#
#   launch/tpu_pod.sh [--dry-run] --name=NAME --zone=ZONE [options] COMMAND [jaxssl.main flags ...]
#
# COMMAND   create | copy | install | run | logs | delete, or all: each of them in that order
# options   --accelerator-type=TYPE  create: e.g. v4-32 (16 chips on 4 workers)
#           --version=RUNTIME        create: TPU software version (tpu-ubuntu2204-base; v5e:
#                                    v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e)
#           --project=PROJECT        default: gcloud's configured project
#           --dry-run                print the commands, one per line, and run none
#
#   launch/tpu_pod.sh --name=ssl --zone=us-central2-b --accelerator-type=v4-32 all \
#     --config=configs/simclr.py:full --workdir=/mnt/shared/simclr
#
# run starts the command in the background on every worker (log: ~/jaxssl.log on each); logs
# follows worker 0's until its process ends. The workdir must be one directory that all workers
# see (an NFS/Filestore or gcsfuse mount): every process writes its shards of a checkpoint there.
set -euo pipefail
usage() {  # The comment block above, as the help text.
  sed -n '2,/^set /s/^# \{0,1\}//p' "$0"
  exit "$1"
}
fail() {
  echo "error: $1 (launch/tpu_pod.sh --help for usage)" >&2
  exit 2
}

dry_run=0 name="" zone="" accelerator_type="" version=tpu-ubuntu2204-base project=""
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --accelerator-type=*) accelerator_type=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    -h | --help) usage 0 ;;
    -*) fail "unknown option $1" ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || usage 2 >&2
command=$1
shift
case $command in
  create | copy | install | run | logs | delete | all) ;;
  *) fail "unknown command '$command'" ;;
esac
[ -n "$name" ] || fail "pass --name=NAME"
[ -n "$zone" ] || fail "pass --zone=ZONE"
if [ "$command" = create ] || [ "$command" = all ]; then
  [ -n "$accelerator_type" ] || fail "$command needs --accelerator-type=TYPE, e.g. v4-32"
fi
has_flag() {  # has_flag --name= FLAGS...
  local flag
  for flag in "${@:2}"; do [[ $flag == "$1"* ]] && return 0; done
  return 1
}
if [ "$command" = run ] || [ "$command" = all ]; then
  has_flag --config= "$@" || fail "$command needs --config=configs/<name>.py"
  has_flag --workdir= "$@" || fail "$command needs --workdir=DIR (one directory all workers see)"
elif [ $# -gt 0 ]; then
  fail "only run and all take jaxssl.main flags, got: $*"
fi
cd "$(dirname "$0")/.."  # copy sends paths relative to the repository root.

# One shell word as the shell reads it back: plain, or single-quoted after any `--option=`. The
# printed commands read better than with printf %q's backslashes.
quote() {
  case $1 in
    *[!A-Za-z0-9_./:=@%+,-]*) ;;
    *) printf '%s' "$1"; return ;;
  esac
  local option="" value=$1
  if [[ $1 =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
    option=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
  fi
  printf "%s'%s'" "$option" "${value//\'/\'\\\'\'}"
}
# Runs a command, or prints it (one line) under --dry-run.
do_run() {
  if [ "$dry_run" = 1 ]; then
    local words=() word
    for word in "$@"; do words+=("$(quote "$word")"); done
    echo "${words[*]}"
  else
    "$@"
  fi
}

tpu=(gcloud compute tpus tpu-vm)
where=("--zone=$zone")
[ -n "$project" ] && where+=("--project=$project")
on_all=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all)
venv='~/jaxssl_venv'

create() {
  do_run "${tpu[@]}" create "$name" "${where[@]}" "--accelerator-type=$accelerator_type" \
    "--version=$version"
}
# scp of the checkout rather than a git clone on the workers: the pod runs exactly the code you
# have here, uncommitted edits included, and workers need no access to the repository. Only what
# `pip install -e .` and the configs need is sent, into a fresh directory (no stale modules).
copy() {
  do_run "${on_all[@]}" '--command=rm -rf ~/jaxssl && mkdir -p ~/jaxssl'
  do_run "${tpu[@]}" scp --recurse jaxssl configs pyproject.toml README.md "$name:~/jaxssl" \
    "${where[@]}" --worker=all
}
# jax>=0.10 needs Python>=3.11 and the TPU images have Ubuntu 22.04's 3.10: uv provides a newer
# Python in a venv without apt. jax[tpu] pulls the libtpu matching the jax that jaxssl resolves.
install() {
  do_run "${on_all[@]}" "--command=python3 -m pip install --user uv && ~/.local/bin/uv venv --seed --clear --python=3.12 $venv && cd ~/jaxssl && $venv/bin/python -m pip install -e . \"jax[tpu]\""
}
# The same command on every worker at once, detached so that it survives this ssh session.
# --distributed and no process flags: jax.distributed.initialize() reads the coordinator, the
# number of processes and each one's index from the TPU VM's metadata.
run() {
  local flags="" flag
  for flag in "$@"; do flags+=" $(quote "$flag")"; done
  do_run "${on_all[@]}" "--command=cd ~/jaxssl && { nohup $venv/bin/python -m jaxssl.main$flags --distributed > ~/jaxssl.log 2>&1 < /dev/null & echo \$! > ~/jaxssl.pid; }"
}
# Worker 0 runs jaxssl's process 0, the one that writes the workdir; tail stops when it ends.
logs() {
  do_run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=0 \
    '--command=tail -n +1 --pid=$(cat ~/jaxssl.pid) -f ~/jaxssl.log'
}
delete() {
  do_run "${tpu[@]}" delete "$name" "${where[@]}" --quiet
}

if [ "$command" != all ]; then
  "$command" "$@"
  exit 0
fi
# A pod slice bills while it exists: if a step fails or is interrupted, say how to delete it
# (deleting it here would also end a run that is still going, e.g. after Ctrl-C in logs).
finished=0
[ "$dry_run" = 1 ] || trap '[ "$finished" = 1 ] || echo "stopped; the TPU $name may still exist:" \
  "launch/tpu_pod.sh --name=$name --zone=$zone${project:+ --project=$project} delete" >&2' EXIT
create
copy
install
run "$@"
logs
delete
finished=1
