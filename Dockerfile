# syntax=docker/dockerfile:1

# The function's runtime image: one static binary on distroless, as non-root.
# Build: docker build -t function-hf-download-runtime .
# Package: crossplane xpkg build -f package --embed-runtime-image=function-hf-download-runtime

FROM --platform=${BUILDPLATFORM} golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /function .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /function /function
EXPOSE 9443
USER nonroot:nonroot
ENTRYPOINT ["/function"]
