#!/bin/sh
# Runs once per `docker compose up` in the minio-setup container (the
# minio/mc image), after MinIO is healthy: creates the bucket drctl's
# backups go to (config/docker-compose.toml, [[object_stores]] "minio"),
# then exits; drctl starts only after it succeeded. Creating a bucket that
# exists is a no-op (--ignore-existing), so every later `up` passes too.
#
# Environment (set in docker-compose.yml):
#   MINIO_ROOT_USER, MINIO_ROOT_PASSWORD   MinIO's credentials
#   BUCKET                                 the bucket to create
set -eu

: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER}"
: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"
: "${BUCKET:?set BUCKET}"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$BUCKET"
echo "minio-setup: bucket $BUCKET ready"
