# syntax=docker/dockerfile:1
# Multi-stage build: the Go toolchain builds static binaries, and the final
# image holds only them and the default configuration (~25 MB).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/worker ./cmd/enqueue ./cmd/sourcesim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY configs/worker.yaml /etc/syncworker/worker.yaml
ENV SYNCWORKER_CONFIG=/etc/syncworker/worker.yaml
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/worker"]
