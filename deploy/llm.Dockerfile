# syntax=docker/dockerfile:1.7
# Milo LLM: a GGUF model (Mistral 7B Instruct Q4_K_M) on llama-cpp-python. Build from the
# repository root:
#   docker build -f deploy/llm.Dockerfile -t milo/llm:cuda .
#   docker build -f deploy/llm.Dockerfile --build-arg DEVICE=cpu -t milo/llm:cpu .
# llama-cpp-python ships no wheels: it compiles llama.cpp in the build stage, with CUDA in
# the toolkit ("devel") image; the runtime image only needs the CUDA runtime and cuBLAS.
# The model is mounted read-only at /models/llm/model.gguf (see docker-compose.yml).

# cuda | cpu: picks the build and base images; the install step is the same.
ARG DEVICE=cuda
ARG CUDA_BUILD_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu24.04
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG CPU_IMAGE=ubuntu:24.04

FROM ${CUDA_IMAGE} AS base-cuda
FROM ${CPU_IMAGE} AS base-cpu

FROM ${CUDA_BUILD_IMAGE} AS build-cuda
# libcuda.so.1 comes from the host driver at run time; the linker takes the toolkit's stub.
RUN ln -s libcuda.so /usr/local/cuda/lib64/stubs/libcuda.so.1
ENV LIBRARY_PATH=/usr/local/cuda/lib64/stubs \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs
FROM ${CPU_IMAGE} AS build-cpu

# hadolint ignore=DL3006 # base-${DEVICE} is one of the two stages above, each tagged
FROM base-${DEVICE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/milo \
    PATH=/opt/milo/bin:$PATH
# libgomp1: llama.cpp's CPU threads use OpenMP.
# hadolint ignore=DL3008 # Ubuntu pins the interpreter by release; a version pin breaks on every point update
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006 # build-${DEVICE} is one of the two stages above, each tagged
FROM build-${DEVICE} AS build
ARG DEVICE
# GPU generations to compile for: 120 = RTX 50xx (Blackwell); e.g. "89;120" adds RTX 40xx.
ARG CUDA_ARCHITECTURES=120
# Empty: install.sh's default (CUDA on for DEVICE=cuda, llama.cpp's own for cpu).
ARG CMAKE_ARGS=
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/milo \
    PATH=/opt/milo/bin:$PATH \
    CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES} \
    CMAKE_ARGS=${CMAKE_ARGS}
# The same Ubuntu release as the runtime base, so the venv's python3 is the same one.
# hadolint ignore=DL3008 # Ubuntu pins the toolchain by release; a version pin breaks on every point update
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       python3 python3-venv python3-dev build-essential cmake ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/milo
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
COPY deploy/install.sh ./deploy/install.sh
RUN --mount=type=cache,target=/root/.cache/pip sh deploy/install.sh llm "${DEVICE}" .

FROM base AS runtime
LABEL org.opencontainers.image.title="milo-llm" \
      org.opencontainers.image.description="Milo LLM service (gRPC)"
RUN groupadd --system --gid 10001 milo \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/milo milo
COPY --from=build /opt/milo /opt/milo
USER 10001:10001
WORKDIR /home/milo
# Settings come from the environment (MILO_LLM_*); the model from the read-only mount.
ENV MILO_MODELS_DIR=/models \
    MILO_LLM_HOST=0.0.0.0 \
    MILO_LLM_PORT=50053 \
    MILO_LLM_METRICS_PORT=9153 \
    MILO_HEALTHCHECK_ADDRESS=127.0.0.1:50053
EXPOSE 50053 9153
# SERVING only once the model is loaded and warmed up; loading may take a minute.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-m", "services.runtime.healthcheck"]
ENTRYPOINT ["python", "-m", "services.llm"]
