# pgbouncer as the tests run it: Debian 12's package (1.18). Build:
#   docker build -f infra/docker/pgbouncer.Dockerfile -t safepkg-pgbouncer:1.18.0 infra/docker
FROM debian:12.8-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends pgbouncer \
  && rm -rf /var/lib/apt/lists/*
# pgbouncer refuses to run as root.
USER 1000:1000
EXPOSE 6432
ENTRYPOINT ["pgbouncer"]
CMD ["/etc/pgbouncer/pgbouncer.ini"]
