#!/bin/sh
# The tiny step program of the orchestrator's tests: it does what the
# script file says for the step named in $1 and records every run.
#
#   $VMI_TEST_DIR/script    lines "<step> <run|undo> <action...>"; the
#                           default action is "succeed"
#   $VMI_TEST_DIR/runs.log  one line per run: "<step> <run|undo> <attempt>"
#
# Actions: succeed | sleep SECONDS | fail | fail-times N | hang | kubectl ARGS
step="$1"
shift
action_kind=run
for arg in "$@"; do
  [ "$arg" = "--undo" ] && action_kind=undo
done
dir="${VMI_TEST_DIR:?VMI_TEST_DIR is not set}"
echo "$step $action_kind ${VMI_STEP_ATTEMPT:-0}" >> "$dir/runs.log"
echo "test step $step ($action_kind), attempt ${VMI_STEP_ATTEMPT:-0}, job ${VMI_JOB_NAME:-?}"
action=$(awk -v s="$step" -v k="$action_kind" '$1 == s && $2 == k { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' "$dir/script" 2>/dev/null)
[ -n "$action" ] || action=succeed
set -- $action
case "$1" in
  succeed)
    echo "done"
    ;;
  sleep)
    sleep "$2"
    echo "slept $2 s"
    ;;
  fail)
    echo "error: $step was told to fail"
    exit 1
    ;;
  fail-times)
    count_file="$dir/count.$step.$action_kind"
    n=$(cat "$count_file" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > "$count_file"
    if [ "$n" -le "$2" ]; then
      echo "error: failing run $n of $2 on purpose"
      exit 1
    fi
    echo "succeeded on run $n"
    ;;
  hang)
    echo "hanging"
    exec sleep 100000
    ;;
  kubectl)
    shift
    exec kubectl "$@"
    ;;
  *)
    echo "error: unknown test action: $action"
    exit 2
    ;;
esac
