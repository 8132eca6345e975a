# Images of compose.yaml, built with the repository root as the context.
#
# Stage `tensorflow`: Python with requirements.txt, TensorFlow included. It is the image of the
# one-shot model-export service, and it writes the protobuf descriptors of TF Serving's API that
# Locust processes load instead of importing TensorFlow (tfsload/core/protos.py), as `make setup`
# does on a host.
#
# Final stage: the official Locust image plus exactly requirements-client.txt, no TensorFlow, and
# this project's client code in the repository's layout (locustfiles/tfserving.py puts the folder
# above it on the import path). The locust-master and locust-worker services run it.
#
# The base images are build arguments whose defaults are the official registry images, which
# compose.yaml passes on unless TFSLOAD_PYTHON_IMAGE / TFSLOAD_LOCUST_IMAGE name others. Where no
# registry answers, .ci/docker-engine builds local equivalents (same entrypoints and layout) and
# names them in its images.env. No `# syntax=` line: BuildKit would pull that frontend image.
ARG PYTHON_IMAGE=python:3.11.15-slim
ARG LOCUST_IMAGE=locustio/locust:2.47.0

FROM ${PYTHON_IMAGE} AS tensorflow
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/tfsload
COPY requirements.txt requirements-client.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY model_export/ model_export/
COPY tfsload/ tfsload/
RUN python -m tfsload.core.protos build tfsload/_generated/tfserving_descriptors.binpb

# The tag is requirements-client.txt's locust pin, so the install below keeps the image's Locust.
FROM ${LOCUST_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /home/locust/tfsload
COPY requirements-client.txt ./
RUN pip install --no-cache-dir -r requirements-client.txt
COPY tfsload/ tfsload/
COPY locustfiles/ locustfiles/
COPY configs/ configs/
COPY --from=tensorflow /opt/tfsload/tfsload/_generated/tfserving_descriptors.binpb tfsload/_generated/tfserving_descriptors.binpb
