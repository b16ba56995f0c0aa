# Sourced by the GPU-machine scripts (cuda-check.sh, gpu-flux-bench.sh, gpu-train-teacher.sh): builds
# arcflow against the LibTorch inside the machine's CUDA PyTorch wheel, with the header-only
# dependencies and libpng/zlib taken from $DEPS (include/ and lib/; see cuda-check.sh).
# Usage: DEPS=DIR OUT=DIR; source scripts/cuda-prelude.sh; cuda_build [TARGET...]   (into build-cuda/)
cuda_build() {
  mkdir -p "$OUT"
  local prefix start=$(date +%s)
  prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  export LD_LIBRARY_PATH="$DEPS/lib:${LD_LIBRARY_PATH:-}"
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix;$DEPS" \
    > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; return 1; }
  local targets=()
  [ $# -gt 0 ] && targets=(--target "$@")
  cmake --build build-cuda --parallel "$(nproc)" ${targets[@]+"${targets[@]}"} > "$OUT/build.log" 2>&1 ||
    { grep -E "error|Error" "$OUT/build.log" | head -40; return 1; }
  echo "build: $(( $(date +%s) - start )) s"
}
