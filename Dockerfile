# For users with Docker: one static binary on an empty base, as `make images` builds
# without Docker. Pick the binary with --build-arg, e.g.
#   docker build --build-arg BINARY=l2-controller -t ghcr.io/portico-dev/l2-controller:0.1.0 .
# The chart runs /<binary> as the container's command, so the image needs no entrypoint;
# with `docker run`, name it: docker run IMAGE /l2-controller --help
FROM golang:1.26 AS build
ARG BINARY
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN test -n "$BINARY" && test -d "cmd/$BINARY" || { echo "set --build-arg BINARY to one of: $(ls cmd)"; exit 1; }
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w" -o /out/$BINARY ./cmd/$BINARY \
 && mkdir -p /out/tmp && chmod 1777 /out/tmp

FROM scratch
ARG BINARY
COPY --from=build /out/ /
# Controllers run as the distroless "nonroot" user; the chart runs the node agent as
# root with the capabilities it needs.
USER 65532:65532
