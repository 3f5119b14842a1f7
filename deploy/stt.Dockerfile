# syntax=docker/dockerfile:1.7
# Milo STT: faster-whisper on CTranslate2. Build from the repository root:
#   docker build -f deploy/stt.Dockerfile -t milo/stt:cuda .
#   docker build -f deploy/stt.Dockerfile --build-arg DEVICE=cpu -t milo/stt:cpu .
# Models are mounted read-only at /models/stt (see docker-compose.yml), never baked in.

# cuda | cpu: picks the base image; the install step is the same (deploy/install.sh).
ARG DEVICE=cuda
# CTranslate2 4.x wheels dlopen CUDA 12 (cuBLAS) and cuDNN 9: the cuDNN runtime image has
# both. 12.8 is the first CUDA with Blackwell (RTX 50xx, sm_120) and runs on CUDA 13 drivers.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG CPU_IMAGE=ubuntu:24.04

FROM ${CUDA_IMAGE} AS base-cuda
FROM ${CPU_IMAGE} AS base-cpu

# hadolint ignore=DL3006 # base-${DEVICE} is one of the two stages above, each tagged
FROM base-${DEVICE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/milo \
    PATH=/opt/milo/bin:$PATH
# hadolint ignore=DL3008 # Ubuntu pins the interpreter by release; a version pin breaks on every point update
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM base AS build
ARG DEVICE
RUN python3 -m venv /opt/milo
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
COPY deploy/install.sh ./deploy/install.sh
RUN --mount=type=cache,target=/root/.cache/pip sh deploy/install.sh stt "${DEVICE}" .

FROM base AS runtime
LABEL org.opencontainers.image.title="milo-stt" \
      org.opencontainers.image.description="Milo speech-to-text service (gRPC)"
RUN groupadd --system --gid 10001 milo \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/milo milo
COPY --from=build /opt/milo /opt/milo
USER 10001:10001
WORKDIR /home/milo
# Settings come from the environment (MILO_STT_*); models from the read-only mount.
ENV MILO_MODELS_DIR=/models \
    MILO_STT_HOST=0.0.0.0 \
    MILO_STT_PORT=50051 \
    MILO_STT_METRICS_PORT=9151 \
    MILO_HEALTHCHECK_ADDRESS=127.0.0.1:50051 \
    HF_HUB_OFFLINE=1
EXPOSE 50051 9151
# SERVING only once the model is loaded and warmed up; loading may take a minute.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-m", "services.runtime.healthcheck"]
ENTRYPOINT ["python", "-m", "services.stt"]
