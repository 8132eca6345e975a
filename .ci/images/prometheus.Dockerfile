# tfsload-local/prometheus:bookworm, built by .ci/docker-engine where prom/prometheus cannot be
# pulled: Debian's prometheus binary (the build context is the unpacked Debian package) with the
# official image's entrypoint, default command, paths and user.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY usr/bin/prometheus usr/bin/promtool /bin/
RUN mkdir -p /etc/prometheus /prometheus \
    && chown nobody:nogroup /etc/prometheus /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
