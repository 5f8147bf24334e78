# berth's container image: the API server as one static binary on an empty
# base, run as a non-root user (65532), its SQLite database and JWT key on the
# volume at /data.
#
# Build it where a registry is reachable (the first stage pulls golang):
#
#	docker build --build-arg VERSION="$(git describe --always --dirty)" -t berth .
#	docker run -p 8080:8080 -v berth-data:/data berth
#
# CI has no registry, so it proves the final stage alone: the test
# TestImageRunsAndIsHealthy (internal/deploy) builds the binary on the host,
# takes everything after the last FROM line of this file, turns its
# `COPY --from=build` lines into plain COPYs of the files it prepared, builds
# that on the local engine, and checks the container becomes healthy, passes
# `berth healthcheck`, runs as 65532 and exits 0 on SIGTERM. Keep the final
# stage copying only from the build stage, so that rewrite stays faithful.
#
# The web console is in the binary: its build (web/dist, committed) is
# embedded by the Go package in web/, so this image needs no node. The image
# holds no Docker engine, so with the default --runtime auto
# berth falls back to the process runtime (NOT a sandbox) with a warning. To
# run workspaces in containers, give it an engine:
#
#	docker run … -v /var/run/docker.sock:/var/run/docker.sock --group-add <socket gid> \
#		berth serve --runtime docker --docker-host unix:///var/run/docker.sock

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces the OTLP protobuf module with this trimmed copy.
COPY third_party ./third_party
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
# The web console's committed build and the package that embeds it (not its
# sources or node_modules: node is not needed to build berth).
COPY web/embed.go ./web/
COPY web/dist ./web/dist
# docker build --build-arg VERSION="$(git describe --always --dirty)" .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
        -ldflags "-X github.com/berthhq/berth/internal/version.Version=${VERSION}" \
        -o /out/berth ./cmd/berth
# An empty /data, given to the runtime user below: a new volume mounted there
# copies its ownership, so berth can write to it.
RUN mkdir /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/berth /berth
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# TMPDIR: the empty base has no /tmp, and SQLite (and Go's os.TempDir) look
# for a temporary directory in TMPDIR first; /data is the one directory the
# runtime user can always write to, even on a fresh volume.
ENV BERTH_ADDR=0.0.0.0:8080 BERTH_ADMIN_ADDR=0.0.0.0:9090 BERTH_DATA_DIR=/data TMPDIR=/data
EXPOSE 8080 9090
VOLUME /data
# `berth healthcheck` exits 0 when the server at BERTH_ADDR answers /ready.
HEALTHCHECK CMD ["/berth", "healthcheck"]
ENTRYPOINT ["/berth"]
CMD ["serve"]
