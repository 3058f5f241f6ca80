# shellcheck shell=bash
# Sourced by scripts/setup.sh and controlplane/build.sh (not run on its own).
# A long build that prints nothing for minutes looks hung on a first run; a full cargo or go log
# buries the phase lines. So: the build's output goes to a log file, and every
# $UNBOUNDED_HEARTBEAT_SECONDS (default 30) one line on stderr says how long it has run, how
# many units it finished and the last one. On failure the log's tail is printed.
#
#   heartbeat LABEL LOG PATTERN command [args...]
#
# PATTERN is an extended regex matching the log lines that mark one finished unit (cargo's
# "Compiling x", a package path from `go build -v`).

heartbeat() {
  local label=$1 log=$2 pattern=$3
  shift 3
  local every=${UNBOUNDED_HEARTBEAT_SECONDS:-30} start=$SECONDS rc=0 ticker
  # The command runs in the foreground so Ctrl-C reaches it; the ticker is the background job
  # and ends with its parent shell even if this function never gets to stop it.
  (
    parent=$$
    while :; do
      for ((i = 0; i < every; i++)); do
        sleep 1
        kill -0 "$parent" 2>/dev/null || exit 0
      done
      done_units=$(grep -cE "$pattern" "$log" 2>/dev/null || true)
      last=$(grep -E "$pattern" "$log" 2>/dev/null | tail -1 | sed 's/^ *//' || true)
      echo "  ... $label: $((SECONDS - start)) s, ${done_units:-0} done${last:+; last: $last}" >&2
    done
  ) &
  ticker=$!
  "$@" >"$log" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if ((rc != 0)); then
    echo "$label failed (exit $rc) after $((SECONDS - start)) s; the end of its output:" >&2
    tail -n 30 "$log" >&2
  fi
  return "$rc"
}
