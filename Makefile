# Two entry points, both self-contained on a fresh machine with Go and git:
#   make render  runs the function on the example and prints what Crossplane would apply
#   make test    runs every test (unit, script, render goldens, packages, control plane)
# and the release path (README, "Release"):
#   make package REGISTRY=<registry>/<org>  builds the packages and the downloader image into _output/
#   make push REGISTRY=<registry>/<org>     pushes them there with `crossplane xpkg push`

SHELL := /bin/bash
BIN := $(CURDIR)/bin
CROSSPLANE := $(BIN)/crossplane
LINT := $(BIN)/golangci-lint
ACTIONLINT := $(BIN)/actionlint
# A release's registry and repository prefix, and its version: the nearest v* tag (with
# -<n>-g<sha> past it), else a Go-style pseudo-version v0.0.0-<commit time>-<sha>, as
# function-template-go's CI makes; either ends in -dirty when the tree has local changes.
REGISTRY ?= xpkg.crossplane.io/hfops
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || \
	echo v0.0.0-$$(TZ=UTC git show -s --format=%cd --date=format-local:%Y%m%d%H%M%S)-$$(git rev-parse --short=12 HEAD)$$(git diff --quiet HEAD || echo -dirty))
OUTPUT ?= $(CURDIR)/_output
ARCHES ?= amd64 arm64

.PHONY: render test lint unit unit-under-load e2e package push version lock

# The Crossplane CLI, built from the separate tools module so its dependencies
# never enter the function's go.mod; by hack/tools.sh, as the e2e suite's other tools are, so
# both share one binary with its version stamped (hack/tools.sh rebuilds it only when stale).
$(CROSSPLANE): tools/crossplane/go.mod
	bash hack/tools.sh crossplane

render: $(CROSSPLANE)
	@go build -o $(BIN)/function-hf-download .
	@go build -o $(BIN)/render ./hack/render
	@$(BIN)/render -crossplane=$(CROSSPLANE) -function=$(BIN)/function-hf-download $(if $(FULL),-full)

# The version `make package` would build, e.g. for CI to compute it outside sudo (git refuses a
# repository that another user owns).
version:
	@echo $(VERSION)

package: $(CROSSPLANE)
	VERSION=$(VERSION) REGISTRY=$(REGISTRY) OUTPUT=$(OUTPUT) ARCHES="$(ARCHES)" CROSSPLANE=$(CROSSPLANE) bash hack/package.sh

push: $(CROSSPLANE)
	VERSION=$(VERSION) REGISTRY=$(REGISTRY) OUTPUT=$(OUTPUT) CROSSPLANE=$(CROSSPLANE) bash hack/push.sh

# The downloader's hashed lock from its pins (downloader/requirements.in), with Debian's
# python3 and the standard library only; it asks the Python package index for the hashes.
lock:
	/usr/bin/python3 hack/pylock.py downloader/requirements.in --python 3.11 --python 3.12 --python 3.13 \
		--python 3.14 --glibc 2.28 --musl -o downloader/requirements.txt

# golangci-lint, built from its own tools module like the CLI: .golangci.yml
# says which linters and why; the formatters (gofmt, goimports) run with them.
# Its govet runs every analyzer `go vet` does (and more), so `go vet` is not run
# again: that was 40 s of a cold run for nothing.
$(LINT): tools/golangci-lint/go.mod
	bash hack/tools.sh golangci-lint

# actionlint checks the GitHub Actions workflow, and with Debian's shellcheck
# (installed when missing) the shell of its run steps; shellcheck also checks
# the hack/ scripts the Makefile runs.
$(ACTIONLINT): tools/actionlint/go.mod
	bash hack/tools.sh actionlint

# `make test` is these three: lint first, as it fails fastest; then unit and e2e side by side,
# since the e2e suite mostly waits on its control plane while the unit tests keep the CPUs
# busy (neither depends on the machine's speed). Output is synced by line, so each go test
# package's verdict stays whole. CI runs them as separate jobs. (Building the e2e programs
# first, alone, was measured slower from an empty cache: 35 min against 33.)
test: lint
	@$(MAKE) --no-print-directory -j2 --output-sync=line unit e2e

lint: $(LINT) $(ACTIONLINT)
	bash hack/apt-install.sh shellcheck
	$(LINT) run ./...
	cd e2e && $(LINT) run --config ../.golangci.yml ./...
	$(ACTIONLINT) -shellcheck=shellcheck
	shellcheck hack/*.sh .ci/run

# The function's module: unit, script (the real hf, hack/hf.sh), render
# goldens, example validation.
unit: $(CROSSPLANE)
	bash hack/hf.sh
	bash hack/tools.sh promtool
	go test -race -count=1 -timeout 30m ./...

# `make unit` three times in a row with both cores kept busy by two CPU-bound processes: the
# suite waits for events, never for time, so a busy machine (as CI's may be) only makes it slower.
unit-under-load:
	@for burner in 1 2; do sha256sum /dev/zero & done; trap 'kill $$(jobs -p)' EXIT; \
	for run in 1 2 3; do echo "make unit under load: run $$run of 3"; $(MAKE) unit || exit 1; done

# The control-plane suite in e2e/ (a module of its own; its first run builds
# etcd, kube-apiserver, kube-controller-manager, the kubelet and Crossplane core
# into bin/, and the node's images, hence the long timeout); then its claim
# flavour and package installs again on Crossplane 1.20 (E2E_CROSSPLANE=v1: a
# control plane of its own, started after the first has stopped, as
# provider-kubernetes' fixed ports allow one at a time).
# -parallel 8: the tests spend their time waiting for controllers and pods, not on the CPU,
# so more of them at once than go test's default (the number of CPUs) shortens the run.
# No -race here: what the suite tests runs in processes of its own (the function, Crossplane,
# the control plane, the pods), built without it; the race detector would watch only the
# harness, and instrumenting client-go for it costs minutes of a cold run. The unit tests,
# hubtest's among them, run under -race.
E2E_ON_V1 := ^(TestClaimWithProviderKubernetes|TestRelease|TestLegacyConfigurationDependenciesResolve)$$

e2e: $(CROSSPLANE)
	go test -C e2e -count=1 -parallel 8 -timeout 60m ./...
	E2E_CROSSPLANE=v1 go test -C e2e -count=1 -parallel 8 -timeout 30m -run '$(E2E_ON_V1)' ./...
