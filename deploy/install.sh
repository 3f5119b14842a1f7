#!/bin/sh
# The one install step of every image: Milo with one component's extra, for one device.
#
#   deploy/install.sh EXTRA DEVICE [SRC]      EXTRA: stt|translate|llm|tts|gateway
#                                             DEVICE: cuda|cpu    SRC: source tree (.)
#
# Every Dockerfile runs it in its build stage, and tests/deploy runs the very same script
# with DEVICE=cpu into a fresh virtual environment, so what the images install is tested.
# It installs into the environment of $PYTHON (default: the `python` on PATH, the image's
# venv). Knobs, all optional, from the environment:
#   PIP_INSTALL_ARGS      extra arguments for every pip install (CI: --constraint ...)
#   TORCH_SPEC            the torch requirement for the tts extra (default: torch)
#   TORCH_INDEX_URL       where torch comes from; unset or empty: the PyTorch index for
#                         DEVICE (cu128 wheels run on Blackwell, sm_120); `pypi`: pip's own
#   CUDA_ARCHITECTURES    GPUs llama.cpp is compiled for (default 120: RTX 50xx, Blackwell)
#   CMAKE_ARGS            llama-cpp-python build flags (default: CUDA on for DEVICE=cuda)
# pip's own PIP_* variables (PIP_CONSTRAINT, PIP_INDEX_URL, ...) work as usual.
set -eu

usage() { echo "usage: $0 stt|translate|llm|tts|gateway cuda|cpu [SRC]" >&2; exit 2; }
[ $# -ge 2 ] || usage
extra=$1
device=$2
src=${3:-.}
case $extra in stt|translate|llm|tts|gateway) ;; *) usage ;; esac
case $device in cuda|cpu) ;; *) usage ;; esac

python=${PYTHON:-python}
# shellcheck disable=SC2086 # PIP_INSTALL_ARGS is a list of arguments, split on purpose
pip_install() { "$python" -m pip install --no-input ${PIP_INSTALL_ARGS:-} "$@"; }

if [ "$extra" = tts ]; then
    # torch first, from the index that matches the device: a plain `pip install torch`
    # would pull the default CUDA build (GBs) into the CPU image, and the wrong CUDA into
    # the GPU one. The tts extra's loose `torch>=2.4` then finds it installed.
    if [ "$device" = cuda ]; then default_index=https://download.pytorch.org/whl/cu128
    else default_index=https://download.pytorch.org/whl/cpu; fi
    index=${TORCH_INDEX_URL:-$default_index}
    if [ "$index" = pypi ]; then
        pip_install "${TORCH_SPEC:-torch}"
    else
        pip_install --index-url "$index" "${TORCH_SPEC:-torch}"
    fi
fi

if [ "$extra" = llm ] && [ "$device" = cuda ] && [ -z "${CMAKE_ARGS:-}" ]; then
    # llama-cpp-python compiles llama.cpp from its sdist: with CUDA for the GPU image,
    # for the chosen GPU generations only (every arch multiplies the build time).
    # The multimodal tools (mtmd) need libcuda at link time and Milo does not use them.
    CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-120}"
    CMAKE_ARGS="$CMAKE_ARGS -DLLAVA_BUILD=off -DLLAMA_BUILD_TESTS=off"
    export CMAKE_ARGS
fi

pip_install "${src}[${extra}]"
"$python" -m pip check
