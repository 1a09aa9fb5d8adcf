#!/usr/bin/env bash
# Shard's GPU checks on the device machine, in the stages `python -m benchmarks.gpu_kit pack`
# prints (see that module for why in parts):
#   build   unpack .gpu/c1, install its wheels, start the CUDA build in the background
#   part    keep the model piece carried in this call
#   check   wait for the build, join the model, run the exact-drafts test and the benchmark's
#           1- and 8-client rows (Shard and llama-server, both on the GPU); results in $OUT
#   one-machine   after check if device time is left, or in a session of its own after a
#           CPU-only `GGML_CUDA=OFF ... build` (minutes on 16 cores) and the parts: issue 13's
#           first swarm on one machine with default flags, on the CPU only (this machine has 16
#           cores; the scout should start, the oracle cede it a thread and keep at least 0.9x);
#           ALONE_S and WITH_S seconds (60 and 300 by default)
# Everything lives in /tmp/gpu, which stays while the machine is warm between calls.
# Rehearse it here on the CPU first: `python -m benchmarks.gpu_kit pack --python-version 3.11`,
# a copy of the tree with .gpu in it, a venv with only gpu_kit.DEVICE_IMAGE's packages (what
# the device image has) first on PATH, OUT set to an empty folder, and GGML_CUDA=OFF; then
# build, part and check as on the device (check took 3 minutes on 2 cores).
set -euo pipefail
WORK=/tmp/gpu
ARCH="${CUDA_ARCH:-90}"  # H200 and H100; the build is for this architecture only
CUDA="${GGML_CUDA:-ON}"  # OFF only to rehearse on a machine without one
mkdir -p "$WORK/model"

join_model() {  # the model from its carried pieces, checked against the packed digest
  name=$(awk '{print $2}' "$WORK/sha256.txt")
  mkdir -p "$WORK/cache"
  [ -e "$WORK/cache/$name" ] || cat "$WORK"/model/model.[0-9]* >"$WORK/cache/$name"
  (cd "$WORK/cache" && sha256sum -c "$WORK/sha256.txt")
}

use_build() {  # Shard on the CUDA build of libllama, with the joined model
  export PYTHONPATH="$WORK/site:$PWD" LLAMA_CPP_LIB_PATH="$WORK/build/bin"
  export LD_LIBRARY_PATH="$WORK/build/bin:${LD_LIBRARY_PATH:-}"
  export SHARD_CACHE_DIR="$WORK/cache" SHARD_BENCH_CACHE="$WORK/cache/bench" PYTHONUNBUFFERED=1
}

case "${1:-}" in
build)
  rm -f "$WORK/built" "$WORK/server-built" "$WORK/server-failed" "$WORK/failed"  # an earlier try's
  tar xzf .gpu/c1/src.tar.gz -C "$WORK"
  cp .gpu/c1/sha256.txt "$WORK/"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .gpu/c1/wheels/*.whl
  # one build tree: shared libllama for llama-cpp-python, llama-server for the benchmark's peer
  setsid nohup bash -c "
    cmake -S $WORK/llama.cpp -B $WORK/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGGML_CUDA=$CUDA -DCMAKE_CUDA_ARCHITECTURES=$ARCH -DBUILD_SHARED_LIBS=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF \
      -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_APP=OFF \
    && cmake --build $WORK/build --target llama -j $(nproc) && touch $WORK/built \
    || touch $WORK/failed
    cmake --build $WORK/build --target llama-server -j $(nproc) && touch $WORK/server-built \
    || touch $WORK/server-failed
  " >"$WORK/build.log" 2>&1 </dev/null &
  sleep 20
  tail -5 "$WORK/build.log"
  ;;
part)
  for piece in .gpu/c*/model.[0-9]*; do cp "$piece" "$WORK/model/"; done
  ls -l "$WORK/model"
  ;;
check)
  for _ in $(seq 1 100); do  # libllama, then llama-server
    [ -e "$WORK/server-built" ] || [ -e "$WORK/server-failed" ] || [ -e "$WORK/failed" ] && break
    sleep 5
  done
  cp "$WORK/build.log" "$OUT/build.log"
  [ -e "$WORK/built" ] || { echo "build not done"; tail -30 "$WORK/build.log"; exit 1; }
  join_model
  mkdir -p "$WORK/cache/bench/bin"
  version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$WORK/site/llama_cpp/__init__.py")
  cp "$WORK/build/bin/llama-server" "$WORK/cache/bench/bin/llama-server-$version" || true
  use_build
  export LLAMA_ARG_N_GPU_LAYERS=999  # llama-server too puts every layer on the GPU
  nvidia-smi --query-gpu=name,memory.used --format=csv | tee "$OUT/gpu.txt" || echo "no GPU"
  set +e
  timeout 200 python3 -m pytest -q -p no:cacheprovider \
    tests/engine/test_speculation.py::test_drafted_output_is_identical_to_undrafted \
    2>&1 | tee "$OUT/exactness.txt"
  timeout 300 python3 -m benchmarks.suite --sections comparison --servers shard,llama-server \
    --clients 1,8 --samplings greedy,sampled --runs 1 --requests 2 --threads 8 \
    --output "$OUT/benchmarks-gpu.md" 2>&1 | tee "$OUT/bench.txt" | tail -40
  ;;
one-machine)
  for _ in $(seq 1 60); do [ -e "$WORK/built" ] || [ -e "$WORK/failed" ] && break; sleep 5; done
  [ -e "$WORK/built" ] || { echo "run build and part first"; tail -30 "$WORK/build.log"; exit 1; }
  join_model
  use_build
  # the CPU alone, as on a machine without a GPU: with no GPU visible, ggml offloads nothing,
  # not even the big matmuls of a prompt, which it would with the layers on the CPU
  export CUDA_VISIBLE_DEVICES="" SHARD_N_GPU_LAYERS=0 SHARD_SCOUT_N_GPU_LAYERS=0
  nproc | tee "$OUT/one-machine-cores.txt"
  timeout 560 python3 -m benchmarks.one_machine --alone-seconds "${ALONE_S:-60}" \
    --with-scout-seconds "${WITH_S:-300}" --log-dir "$OUT/one-machine" 2>&1 \
    | tee "$OUT/one-machine.txt"
  ;;
*)
  echo "usage: $0 build|part|check|one-machine" >&2
  exit 2
  ;;
esac
