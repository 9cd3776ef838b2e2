# Two entry points, both self-contained on a fresh machine with Go and git:
#   make render  runs the function on the example and prints what Crossplane would apply
#   make test    runs every test (unit, script, render goldens, packages, control plane)

SHELL := /bin/bash
BIN := $(CURDIR)/bin
CROSSPLANE := $(BIN)/crossplane
LINT := $(BIN)/golangci-lint
CROSSPLANE_VERSION := v2.2.1
RENDER_ADDRESS ?= 127.0.0.1:19443

.PHONY: render test

# The Crossplane CLI, built from the separate tools module so its dependencies
# never enter the function's go.mod.
$(CROSSPLANE): tools/crossplane/go.mod
	cd tools/crossplane && go build -trimpath -o $(CROSSPLANE) github.com/crossplane/crossplane/v2/cmd/crank

render: $(CROSSPLANE)
	@go build -o $(BIN)/function-hf-download .
	@$(BIN)/function-hf-download --insecure --address=$(RENDER_ADDRESS) --metrics-address= & pid=$$!; \
	trap 'kill $$pid' EXIT; \
	for i in $$(seq 50); do (exec 3<>/dev/tcp/$${RENDER_ADDRESS%:*}/$${RENDER_ADDRESS#*:}) 2>/dev/null && break; sleep 0.1; done; \
	$(CROSSPLANE) render example/xr.yaml example/composition.yaml example/functions.yaml \
		--xrd=example/definition.yaml --required-resources=example/required --observed-resources=example/observed/script.yaml \
		--include-function-results \
		--function-annotations=render.crossplane.io/runtime-development-target=$(RENDER_ADDRESS)

# golangci-lint, built from its own tools module like the CLI: .golangci.yml
# says which linters and why; the formatters (gofmt, goimports) run with them.
$(LINT): tools/golangci-lint/go.mod
	cd tools/golangci-lint && go build -trimpath -o $(LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint

# The function's module, then the control-plane suite in e2e/ (a module of
# its own; its first run builds etcd, kube-apiserver, kube-controller-manager
# and Crossplane core into bin/, hence the long timeout), then its claim
# flavour and package install again on Crossplane 1.20 (E2E_CROSSPLANE=v1: a
# control plane of its own, started after the first has stopped, as
# provider-kubernetes' fixed ports allow one at a time).
E2E_ON_V1 := ^(TestClaimWithProviderKubernetes|TestFunctionPackageInstalls|TestLegacyConfigurationDependenciesResolve)$$

test: $(CROSSPLANE) $(LINT)
	bash hack/hf.sh
	$(LINT) run ./...
	cd e2e && $(LINT) run --config ../.golangci.yml ./...
	go vet ./...
	go vet -C e2e ./...
	go test -race -count=1 -timeout 30m ./...
	go test -C e2e -race -count=1 -timeout 60m ./...
	E2E_CROSSPLANE=v1 go test -C e2e -race -count=1 -timeout 30m -run '$(E2E_ON_V1)' ./...
