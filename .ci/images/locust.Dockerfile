# tfsload-local/locust:<version>, built by .ci/docker-engine where locustio/locust cannot be
# pulled: the same layout as the official image (Locust in /opt/venv owned by user locust, who
# runs it from /home/locust; entrypoint `locust`; ports 8089 and 5557), on the local Python base.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
ARG LOCUST_VERSION
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "locust==${LOCUST_VERSION}" \
    && useradd --create-home locust \
    && chown -R locust /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER locust
WORKDIR /home/locust
EXPOSE 8089 5557
ENTRYPOINT ["locust"]
