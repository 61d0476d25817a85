#!/usr/bin/env bash
# The first minutes on a GPU machine, in one go, every output under RESULTS_DIR:
#   env        the machine, driver, Python, torch, CUDA/cuDNN and packages (tools/gpu_checks.py env)
#   tests      the CUDA tests: graphs = padded eager exactly, captures on the first frame, memory freed
#              by close, two host syncs per merged frame (test/test_block_graphs.py, test_runtime_engine.py)
#   syncs      the host syncs of one frame, each named by its line (tools/gpu_checks.py syncs)
#   attention  which attention kernel runs with the key mask (tools/gpu_checks.py attention)
#   quick      a quick bench: ViT-T at 512 and the default model, 10 timed frames (RESULTS_DIR/quick)
#   full       `make bench-gpu`'s full bench (RESULTS_DIR/full)
# Each step has its own time limit and the whole stays inside FIRST_RUN_SECONDS (default 480);
# a step that fails or times out does not stop the next (the exit status is 1 if any did). The console gets one line per step and the
# checks' and benches' summaries; RESULTS_DIR/summary.txt holds the step lines and
# RESULTS_DIR/first_run.tar.gz everything, for a caller that can bring back only a few files.
#
#   tools/gpu_first_run.sh RESULTS_DIR
#   PYTHON=/path/to/python3 tools/gpu_first_run.sh RESULTS_DIR     # another interpreter
#
# It runs from this checkout with PYTHONPATH=<checkout> and python3 (or $PYTHON): a CUDA build of
# torch with numpy, OpenCV, PyYAML, safetensors, tqdm, matplotlib and pytest; nothing of the package
# installed, no ROS, no network. Without CUDA it runs what the CPU can (env, attention, the quick
# bench as a CPU dry run) and names the steps it skips.
set -u -o pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 RESULTS_DIR" >&2
  exit 2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
read -r -a PY <<<"${PYTHON:-python3}"
TOTAL=${FIRST_RUN_SECONDS:-480}
RESERVE=15  # kept back for packing the results
SUMMARY=$OUT/summary.txt
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
unset AMENT_PREFIX_PATH
: >"$SUMMARY"
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }

# run_step NAME LIMIT_S COMMAND...: output to NAME.log, at most LIMIT_S (less if the total is nearly spent)
run_step() {
  local name=$1 limit=$2 left start rc status
  shift 2
  left=$((TOTAL - RESERVE - SECONDS))
  ((limit > left)) && limit=$left
  if ((limit < 10)); then
    note "$(printf '%-9s skipped: the %d s of the whole run are spent' "$name" "$TOTAL")"
    return
  fi
  start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out after $limit s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  ((rc == 0)) || FAILED=1
  note "$(printf '%-9s %-26s %4d s  %s' "$name" "$status" $((SECONDS - start)) "$OUT/$name.log")"
}

skip() { note "$(printf '%-9s skipped: %s' "$1" "$2")"; }

pack() {  # written beside, then moved in: tar fails on a folder that changes while it reads it
  local tmp
  tmp=$(mktemp "${TMPDIR:-/tmp}/first_run.XXXXXX") &&
    tar -czf "$tmp" --exclude=./first_run.tar.gz -C "$OUT" . && mv "$tmp" "$OUT/first_run.tar.gz"
}
trap pack EXIT

note "gpu_first_run: $(date -u '+%Y-%m-%d %H:%M UTC'), ${PY[*]}, results in $OUT, at most $TOTAL s"
if "${PY[@]}" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  CUDA=1
else
  CUDA=0
  note "no CUDA device visible to torch: the CUDA-only steps are skipped and the quick bench is a CPU dry run"
fi

run_step env 30 "${PY[@]}" tools/gpu_checks.py env
if ((CUDA)); then
  run_step tests 120 "${PY[@]}" -m pytest -q -rs -p no:cacheprovider test/test_block_graphs.py test/test_runtime_engine.py
  run_step syncs 45 "${PY[@]}" tools/gpu_checks.py syncs
else
  skip tests "needs CUDA (without it the CUDA tests skip; the rest run in make test)"
  skip syncs "needs CUDA (torch's sync debug mode counts CUDA syncs)"
fi
run_step attention 45 "${PY[@]}" tools/gpu_checks.py attention
if ((CUDA)); then
  run_step quick 75 "${PY[@]}" benchmarks/bench_gpu.py --out "$OUT/quick" --variants tiny --iters 10 --warmup 2
  run_step full 300 "${PY[@]}" benchmarks/bench_gpu.py --out "$OUT/full"
else
  run_step quick 240 "${PY[@]}" benchmarks/bench_gpu.py --out "$OUT/quick" --device cpu --variants tiny --size 64 \
    --iters 2 --warmup 1 --dtypes fp32 bf16 --default-input-size 96 128
  skip full "needs CUDA"
fi

for name in tests syncs attention quick full; do
  log=$OUT/$name.log
  [[ -f $log ]] || continue
  echo "== $name =="
  case $name in
    tests) tail -n 15 "$log" ;;
    syncs | attention) grep -v -e '^USDT' -e '^\[W' "$log" | head -n 40 ;;
    *) sed -n '/^targets: /,$p' "$log" | head -n 40 ;;
  esac
done
echo "results: $OUT (everything packed in first_run.tar.gz)"
exit "$FAILED"
