# The manager's image, for those with Docker (`make docker-build`). Without a
# Docker daemon, `make image` builds the same layout with go-containerregistry.
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     -t ghcr.io/modelrollout/modelrollout:0.1.0 --push .

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# Only the packages the manager is built from (a test checks this list).
COPY api/ api/
COPY analysis/ analysis/
COPY controllers/ controllers/
COPY cmd/manager/ cmd/manager/
COPY internal/plan/ internal/plan/
COPY internal/redact/ internal/redact/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /manager ./cmd/manager

FROM gcr.io/distroless/static:nonroot
ARG VERSION=devel
LABEL org.opencontainers.image.source="https://github.com/modelrollout/modelrollout" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
