# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Shared by up, down and kubectl (sourced, not run): where the state lives and how to tell
# whether a recorded pid is still the component we started.

cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$cluster_dir/../.." && pwd)

# The state dir holds certs, kubeconfig, etcd data, logs and one pid file per component.
state=${KRELOAD_CLUSTER_STATE:-$repo_root/.state/cluster}
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}
# Written into every state dir we create; down and up only delete a dir that carries it,
# so a mistyped KRELOAD_CLUSTER_STATE can never make them remove someone else's files.
marker=$state/.kreload-cluster
kubeconfig=$state/admin.kubeconfig
# Next to the state dir (not inside) so that down can remove the dir while holding the lock.
lockfile=$state.lock

# Start order (stop_components stops them in reverse tiers).
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Serialises up and down, e.g. when several test binaries call up at the same time.
# fd 9 must not leak into the components (up closes it for them), or they would hold the lock.
take_lock() {
  mkdir -p "$(dirname "$lockfile")"
  exec 9>"$lockfile"
  flock -w "${KRELOAD_CLUSTER_LOCK_TIMEOUT:-3600}" 9 || die "timed out waiting for $lockfile"
}

# pid recorded for a component, empty if none.
recorded_pid() {
  local f=$state/$1.pid
  if [ -s "$f" ]; then cat "$f"; fi
}

# True when the recorded pid is alive and still runs the component's binary (argv[0]);
# a recycled pid or a zombie (empty cmdline) does not count.
# The component's process exists and has not exited (it may still be the subshell about to exec
# it: right after start, /proc/PID/cmdline can still be bash's on a busy machine).
component_started() {
  local pid run_state
  pid=$(recorded_pid "$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  run_state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ -n "$run_state" ] && [ "$run_state" != Z ] && [ "$run_state" != X ]
}

component_alive() {
  local pid argv0
  pid=$(recorded_pid "$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) || return 1
  [ "${argv0##*/}" = "$1" ]
}

# Stops the given components in tiers: the apiserver's clients first, then the apiserver, then
# etcd. Order matters: a TERMed apiserver waits up to 60s for open watches to end, so its clients
# must be gone first; and it should not lose etcd while it drains.
stop_components() {
  local tier name
  for tier in "kwok kube-scheduler kube-controller-manager" kube-apiserver etcd; do
    local these=()
    for name in $tier; do
      case " $* " in *" $name "*) these+=("$name") ;; esac
    done
    if [ ${#these[@]} -gt 0 ]; then stop_tier "${these[@]}"; fi
  done
}

# TERM the given components that are alive, wait a few seconds, then KILL what is left.
stop_tier() {
  local name pid deadline live=() still
  for name in "$@"; do
    if component_alive "$name"; then
      pid=$(recorded_pid "$name")
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$name")
    fi
  done
  deadline=$((SECONDS + ${KRELOAD_CLUSTER_STOP_GRACE:-10}))
  while [ ${#live[@]} -gt 0 ]; do
    still=()
    for name in "${live[@]}"; do
      if component_alive "$name"; then still+=("$name"); fi
    done
    live=("${still[@]}")
    [ ${#live[@]} -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for name in "${live[@]}"; do
        pid=$(recorded_pid "$name")
        log "$name (pid $pid) still running ${KRELOAD_CLUSTER_STOP_GRACE:-10}s after TERM; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
      done
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  for name in "$@"; do rm -f "$state/$name.pid"; done
}

# Removes the state dir, but only one that up created.
remove_state() {
  [ -e "$state" ] || return 0
  rmdir "$state" 2>/dev/null && return 0 # empty: nothing to check
  [ -f "$marker" ] || die "$state exists but was not created by tests/cluster/up (no $marker); not removing it"
  rm -rf "$state"
}
