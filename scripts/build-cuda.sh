#!/usr/bin/env bash
# Builds sweep with the `cuda` feature (the embedded llama.cpp engine offloading layers to an
# NVIDIA GPU) using a CUDA toolkit installed from PyPI by package name, into its own target
# directory. Needs no GPU and no NVIDIA driver to build; running the binary needs a driver
# that supports the toolkit's CUDA version (CUDA 13: driver R580 or newer).
#
#   scripts/build-cuda.sh            # → target/cuda/release/sweep
#
# Why CUDA 13 wheels and not CUDA 12: NVIDIA's CUDA 12 wheels (`nvidia-cuda-nvcc-cu12`
# 12.0–12.9) ship only `ptxas`, not the `nvcc` driver, `cicc` or the `crt` headers, so they
# cannot compile a `.cu` file; the CUDA 13 wheels (`nvidia-cuda-nvcc`, `nvidia-nvvm`,
# `nvidia-cuda-crt`, `nvidia-cuda-runtime`, `nvidia-cublas`, `nvidia-cuda-cccl`) install one
# complete toolkit tree under `nvidia/cu13` (bin/nvcc, nvvm/bin/cicc, include, lib). Debian
# bookworm's non-free `nvidia-cuda-toolkit` is CUDA 11.8 (needs g++-11).
#
# The wheels ship cuBLAS as shared libraries only (no `libcublas_static.a`, no `culibos`),
# so llama.cpp is built as shared libraries (LLAMA_BUILD_SHARED_LIBS=1), copied by
# llama-cpp-sys-2 next to the binary and found through an `$ORIGIN` rpath; cuBLAS and the
# CUDA runtime are found through the toolkit's lib directory (run the binary with
# `LD_LIBRARY_PATH=$(scripts/build-cuda.sh --print-libdir)`, as scripts/gpu-check.sh does).
# The wheels carry no `libcuda.so` stub to link the driver API against, so ggml is built
# with GGML_CUDA_NO_VMM=ON (its memory pool without CUDA virtual memory management; the
# driver library is then loaded by the runtime at run time, not linked).
#
# Settings (environment):
#   CUDA_ARCHS        CUDA architectures (default "89-real;90-real": Ada and Hopper, SASS only,
#                     no PTX: a short list keeps the build within a 2-core machine)
#   CUDA_PROFILE      cargo profile (default release)
#   CUDA_TARGET_DIR   target directory (default target/cuda)
#   CUDA_PREFIX       where the wheels are installed (default ~/.cache/sweep/cuda13)
#   CUDA_JOBS         parallel jobs for cargo and cmake (default 1)
#   CUDA_NICE         nice level of the build (default 19: the machine is shared)
# Exit code: 0 when target/cuda/<profile>/sweep was linked, non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${CUDA_PREFIX:-$HOME/.cache/sweep/cuda13}
CUDA_HOME=$PREFIX/nvidia/cu13
ARCHS=${CUDA_ARCHS:-89-real;90-real}
PROFILE=${CUDA_PROFILE:-release}
TARGET=${CUDA_TARGET_DIR:-target/cuda}
JOBS=${CUDA_JOBS:-1}
NICE=${CUDA_NICE:-19}
# Pinned: one toolkit release (13.5) whose components are known to build llama.cpp together.
WHEELS=(
  "nvidia-cuda-nvcc==13.5.37"
  "nvidia-cuda-crt==13.5.37"
  "nvidia-nvvm==13.5.37"
  "nvidia-cuda-runtime==13.5.37"
  "nvidia-cuda-nvrtc==13.5.37"
  "nvidia-cuda-cccl==13.3.5.0.6"
  "nvidia-cublas==13.10.0.20"
)

if [ "${1:-}" = "--print-libdir" ]; then
  echo "$CUDA_HOME/lib"
  exit 0
fi

if [ ! -x "$CUDA_HOME/bin/nvcc" ] || [ ! -x "$CUDA_HOME/nvvm/bin/cicc" ]; then
  echo "installing the CUDA toolkit wheels into $PREFIX" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$PREFIX" "${WHEELS[@]}"
fi
# CMake's FindCUDAToolkit and the linker look for the unversioned names.
for lib in cudart cublas cublasLt; do
  so=$(ls "$CUDA_HOME/lib/lib$lib.so."* 2>/dev/null | head -n 1)
  [ -n "$so" ] || { echo "error: lib$lib.so.* missing in $CUDA_HOME/lib" >&2; exit 1; }
  ln -sf "$(basename "$so")" "$CUDA_HOME/lib/lib$lib.so"
done
"$CUDA_HOME/bin/nvcc" --version | tail -n 2 >&2

export CUDA_PATH=$CUDA_HOME
export CUDAToolkit_ROOT=$CUDA_HOME
export CUDACXX=$CUDA_HOME/bin/nvcc
export PATH=$CUDA_HOME/bin:$PATH
# Forwarded by llama-cpp-sys-2's build script to CMake (CMAKE_* and GGML_* variables).
export CMAKE_CUDA_ARCHITECTURES=$ARCHS
export CMAKE_CUDA_COMPILER=$CUDACXX
export GGML_CUDA_NO_VMM=ON
export LLAMA_BUILD_SHARED_LIBS=1
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
export CARGO_BUILD_JOBS=$JOBS
export CARGO_TARGET_DIR=$TARGET

start=$(date +%s)
# `cargo rustc` gives the rpath (the directory llama-cpp-sys-2 copies the llama.cpp shared
# libraries into, beside the binary) to the final link only: the dependencies keep the
# repository's own flags (.cargo/config.toml), so a target directory seeded from a CPU build
# reuses them.
# --disable-new-dtags: a DT_RPATH (not DT_RUNPATH), which the loader also uses for the
# libraries' own dependencies (libggml.so.0 needs libggml-cpu.so.0 and libggml-cuda.so.0, and
# CMake's install step leaves them without a search path of their own).
nice -n "$NICE" cargo rustc --profile "$PROFILE" --features cuda --bin sweep -- \
  -C 'link-arg=-Wl,-rpath,$ORIGIN' -C 'link-arg=-Wl,--disable-new-dtags'
secs=$(( $(date +%s) - start ))
dir=$PROFILE
[ "$PROFILE" = dev ] && dir=debug
bin=$TARGET/$dir/sweep
test -x "$bin"
# llama-cpp-sys-2 copies only the unversioned `lib*.so` names beside the binary, and those are
# symlinks to the `lib*.so.0` sonames the binary asks for: copy the sonames and the files they
# name from the newest build of llama-cpp-sys-2 with the CUDA backend.
libdir=$(ls -dt "$TARGET/$dir"/build/llama-cpp-sys-2-*/out/lib 2>/dev/null |
  while read -r d; do [ -e "$d/libggml-cuda.so" ] && { echo "$d"; break; }; done)
[ -n "$libdir" ] || { echo "error: no llama-cpp-sys-2 build with libggml-cuda.so under $TARGET/$dir/build" >&2; exit 1; }
cp -a "$libdir"/lib*.so.* "$TARGET/$dir/"
# The binary must find every library it needs (the CUDA ones through the toolkit's lib dir).
if LD_LIBRARY_PATH=$CUDA_HOME/lib ldd "$bin" | grep 'not found' >&2; then
  echo "error: $bin cannot find the libraries above" >&2
  exit 1
fi
echo "built $bin in ${secs}s (CUDA archs $ARCHS, $JOBS job(s), profile $PROFILE)" >&2
echo "run it with: LD_LIBRARY_PATH=$CUDA_HOME/lib $bin" >&2
