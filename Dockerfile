# syntax=docker/dockerfile:1
# The couponmesh node image: one static binary (the web client embedded) on
# distroless, running as a non-root user. Build where Docker runs:
#
#   docker build -t couponmesh/couponmesh:latest .
#   docker run --rm -p 8080:8080 -e COUPONMESH_DEV=true \
#     -e COUPONMESH_JWT_SECRET="$(head -c 48 /dev/urandom | base64)" couponmesh/couponmesh:latest
#
# Configuration comes from the environment (COUPONMESH_<KEY>, see
# configs/node.yaml) or from a file mounted and named with
# `node --config /etc/couponmesh/node.yaml`. Deployment: docs/OPERATIONS.md.

ARG GO_VERSION=1.26
ARG NODE_VERSION=20

# 1. The web client. webclient/dist is committed (and embedded as it is by
#    `go build`); rebuilding it here keeps the image true to the sources.
#    Without network access to npm, delete this stage and the
#    COPY --from=web line below: the committed dist is used.
FROM node:${NODE_VERSION}-bookworm-slim AS web
WORKDIR /src/webclient
COPY webclient/package.json webclient/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY webclient/ ./
RUN npm run build

# 2. The binary: pure Go (the embedded development database is SQLite in
#    Go), so static with CGO off.
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
COPY --from=web /src/webclient/dist ./webclient/dist
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/couponmesh ./cmd/couponmesh \
	&& mkdir -p /out/data

# 3. Runtime: no shell, no package manager; uid 65532 (nonroot).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/couponmesh /couponmesh
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV COUPONMESH_HTTP_ADDR=":8080" \
	COUPONMESH_DATA_DIR="/data" \
	COUPONMESH_DEV="false"
# 8080 public (web, /ws, /api, /healthz, /readyz); 8081 admin (/metrics,
# ctl; bound to 127.0.0.1 unless COUPONMESH_ADMIN_ADDR says otherwise);
# 7946 memberlist (TCP and UDP); 7947 protoactor remote, when
# COUPONMESH_REMOTE_ADDR names that port (configs/kubernetes does).
EXPOSE 8080 8081 7946 7946/udp 7947
ENTRYPOINT ["/couponmesh"]
CMD ["node"]
