# syntax=docker/dockerfile:1
#
# The drctl daemon as a container image.
#
#   docker build -t drctl .
#   docker run --rm drctl --help
#   docker run -v $PWD/config/docker-compose.toml:/etc/drctl/drctl.toml:ro -p 7878:7878 drctl
#
# docker-compose.yml builds it for the `drctl` service. The runtime image
# carries the PostgreSQL 15 programs: pg_basebackup for backups, and the
# server (initdb, pg_ctl, postgres) for the scratch servers of restore tests
# (drctl looks for pg_basebackup beside initdb and pg_ctl). No cluster of
# the package's own is created or run. And curl for the healthcheck.

# ---------------------------------------------------------------------------
# Build: compile the drctl binary in release mode. Only what the build needs
# is copied, so the (large) local target/ directory never enters the image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY migrations ./migrations
# The root package (the integration tests) is a workspace member: cargo
# reads its manifest and library path even when building only drctl.
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p drctl \
 && install -D -m 0755 target/release/drctl /out/drctl

# ---------------------------------------------------------------------------
# Runtime: Debian slim (bookworm ships PostgreSQL 15) and a non-root user.
FROM debian:bookworm-slim
# postgresql-common first, told not to create the package's `main` cluster
# that installing postgresql-15 would otherwise make.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl postgresql-common \
 && sed -ri 's/^#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-client-15 postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/drctl --shell /usr/sbin/nologin drctl \
 && install -d -o drctl -g drctl -m 0750 /var/lib/drctl \
 && install -d -m 0755 /etc/drctl
COPY --from=build /out/drctl /usr/local/bin/drctl

USER drctl
WORKDIR /var/lib/drctl
# The state store (SQLite by default) lives here: mount a volume on it.
VOLUME ["/var/lib/drctl"]
EXPOSE 7878
ENV DRCTL_CONFIG=/etc/drctl/drctl.toml

# `docker run IMAGE status` or `docker compose exec drctl drctl status`
# run other commands against the same config.
ENTRYPOINT ["drctl"]
CMD ["serve", "--config", "/etc/drctl/drctl.toml"]
