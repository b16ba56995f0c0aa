#!/usr/bin/env bash
# Reliability checks (CI runs them after scripts/test.sh):
#  1. a clang build with AddressSanitizer + UndefinedBehaviorSanitizer in build-san/, running the
#     unit tests (the GoogleTest suites; the CLI end-to-end tests run in the normal build);
#  2. the libFuzzer harnesses of tests/fuzz/ on the readers (safetensors, IDX, TOML settings,
#     weights/adapter metadata, a diffusers model folder's config.json, scheduler config, shard index,
#     prompts file and
#     reference adapter folder, the JSON body of `arcflow serve`'s POST /v1/generate): the saved crash inputs of tests/fuzz/regressions/ first, then
#     FUZZ_SECONDS (default 60) of fuzzing each from a seed corpus the harness writes itself, one
#     harness per core at a time (FUZZ_JOBS to change it).
# Fails on any sanitizer report, failed test, or fuzzer crash (the input is kept in build-san/fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
scripts/install-deps.sh --sanitizers
cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DARCFLOW_SANITIZE=ON -DARCFLOW_FUZZ=ON
HARNESSES=(fuzz_safetensors fuzz_idx fuzz_config fuzz_weights fuzz_model_folder fuzz_request)
cmake --build build-san --parallel "$(nproc)" --target arcflow_tests "${HARNESSES[@]}"

# torch allocates caches it never frees: leak reports would be about LibTorch, not us.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export OMP_WAIT_POLICY=PASSIVE

echo "== unit tests under ASan + UBSan"
ctest --test-dir build-san --output-on-failure --timeout 1800 -j "$(nproc)" -E '^(cli|browser)\.'

# Each harness fuzzes for FUZZ_SECONDS on one core (libFuzzer runs one process); as many run at once
# as there are cores, so the wall time is FUZZ_SECONDS per round, not per harness.
fuzz_one() {
  local h=$1 dir="build-san/fuzz/$1"
  rm -rf "$dir" && mkdir -p "$dir/corpus" "$dir/crashes"
  ARCFLOW_FUZZ_SEEDS="$dir/corpus" "build-san/$h"
  if compgen -G "tests/fuzz/regressions/$h/*" > /dev/null; then
    "build-san/$h" tests/fuzz/regressions/"$h"/* > "$dir/regressions.log" 2>&1 || { tail -n 40 "$dir/regressions.log"; return 1; }
  fi
  "build-san/$h" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20 -max_len=4096 \
    -artifact_prefix="$dir/crashes/" -print_final_stats=1 "$dir/corpus" > "$dir/fuzz.log" 2>&1
}

JOBS="${FUZZ_JOBS:-$(nproc)}"
echo "== fuzzing, ${FUZZ_SECONDS} s per harness, ${JOBS} at a time"
pids=() names=() failed=()
for h in "${HARNESSES[@]}"; do
  fuzz_one "$h" & pids+=($!); names+=("$h")
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed+=("${names[0]}")
    pids=("${pids[@]:1}"); names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
for h in "${failed[@]}"; do
  tail -n 40 "build-san/fuzz/$h/fuzz.log" 2>/dev/null
  echo "check-sanitizers: $h found a failure; the input is in build-san/fuzz/$h/crashes/" >&2
done
[ ${#failed[@]} -eq 0 ] || exit 1
summary=()
for h in "${HARNESSES[@]}"; do
  log="build-san/fuzz/$h/fuzz.log"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  summary+=("$h: $runs executions in ${FUZZ_SECONDS} s, $cov, no failure")
done
printf '%s\n' "${summary[@]}" | tee build-san/fuzz/summary.txt
