# Images of compose.yaml, built with the repository root as the context. pyproject.toml is the
# one list of pinned dependencies; no stage reads anything else for them.
#
# Stage `wheel`: builds the tfsload wheel that the other stages install.
#
# Stage `tensorflow`: Python with tfsload and its `standin` extra (TensorFlow, the stand-in
# server, the model exporter). It is the image of the one-shot model-export service.
#
# Stage `standin`: that image run as TF Serving's image runs: the same entrypoint path and
# contract (MODEL_NAME, MODEL_BASE_PATH; gRPC 8500 and REST 8501; the service's flags appended),
# serving with `python -m standin`. compose.standin.yaml gives it to the three server services,
# and experiment files can launch it (launch = "docker").
#
# Final stage: the official Locust image plus tfsload's base install (no TensorFlow; the protobuf
# descriptors of TF Serving's API ship in the wheel). Its working directory, /home/locust, holds
# locustfile.py (a link to the installed tfsload/locustfile.py) and configs/. The locust-master
# and locust-worker services run it.
#
# The base images are build arguments whose defaults are the official registry images, which
# compose.yaml passes on unless TFSLOAD_PYTHON_IMAGE / TFSLOAD_LOCUST_IMAGE name others. Where no
# registry answers, .ci/docker-engine builds local equivalents (same entrypoints and layout) and
# names them in its images.env. No `# syntax=` line: BuildKit would pull that frontend image.
ARG PYTHON_IMAGE=python:3.11.15-slim
ARG LOCUST_IMAGE=locustio/locust:2.47.0

FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/tfsload
COPY pyproject.toml README.md ./
COPY tfsload/ tfsload/
COPY standin/ standin/
COPY model_export/ model_export/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /opt/wheels .

FROM ${PYTHON_IMAGE} AS tensorflow
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/tfsload
# The pinned dependencies first, in a layer of their own: editing the sources then rebuilds only
# the small layers below, not TensorFlow's 2 GB.
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*project['dependencies'], *project['optional-dependencies']['standin'], sep='\n')" \
        > /tmp/pins.txt \
    && pip install --no-cache-dir -r /tmp/pins.txt \
    && rm /tmp/pins.txt
COPY --from=wheel /opt/wheels/ /tmp/tfsload-wheels/
RUN pip install --no-cache-dir --no-deps /tmp/tfsload-wheels/tfsload-*.whl \
    && rm -rf /tmp/tfsload-wheels

FROM tensorflow AS standin
ENV MODEL_NAME=model MODEL_BASE_PATH=/models
COPY docker/standin-entrypoint.sh /usr/bin/tf_serving_entrypoint.sh
EXPOSE 8500 8501
ENTRYPOINT ["/usr/bin/tf_serving_entrypoint.sh"]

# The tag is pyproject.toml's locust pin, so installing the wheel keeps the image's Locust. The
# image runs as user locust, who owns /opt/venv and /home/locust.
FROM ${LOCUST_IMAGE} AS locust
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# The official image's own working directory, owned by user locust (WORKDIR creates nothing).
WORKDIR /home/locust
COPY --from=wheel --chown=locust /opt/wheels/ /tmp/tfsload-wheels/
RUN pip install --no-cache-dir /tmp/tfsload-wheels/tfsload-*.whl \
    && rm -rf /tmp/tfsload-wheels \
    && ln -s "$(tfsload locustfile)" locustfile.py
COPY configs/ configs/
