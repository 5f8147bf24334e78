# berth's container image: one static binary on an empty base, run as a
# non-root user, data on a volume.
#
# Minimal for now, and not yet built in CI: a later change completes it (the
# embedded web console build, and CI proof that the image builds and passes
# its health check on a local Docker engine).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
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
ENV BERTH_ADDR=0.0.0.0:8080 BERTH_ADMIN_ADDR=0.0.0.0:9090 BERTH_DATA_DIR=/data
EXPOSE 8080 9090
VOLUME /data
# `berth healthcheck` exits 0 when the server at BERTH_ADDR answers /ready.
HEALTHCHECK CMD ["/berth", "healthcheck"]
ENTRYPOINT ["/berth"]
CMD ["serve"]
