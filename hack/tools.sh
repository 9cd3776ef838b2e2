#!/usr/bin/env bash
# Builds, once, the programs the e2e tests run, into bin/ (git-ignored):
#
#   bin/kube-apiserver, bin/kube-controller-manager,
#   bin/kube-scheduler, bin/kubelet                  from tools/controlplane (k8s.io/kubernetes)
#   bin/crossplane-core                              Crossplane core v2 (cmd/crossplane) from tools/controlplane
#   bin/crossplane                                   the Crossplane CLI (cmd/crank) from tools/crossplane
#   bin/crossplane-core-v1                           Crossplane core v1.20 (cmd/crossplane) from tools/crossplane-v1,
#                                                    for the claim flavour on Crossplane 1.x (e2e, XP_CORE=v1)
#   bin/provider-kubernetes                          provider-kubernetes (cmd/provider) from tools/provider-kubernetes
#   bin/kube-state-metrics                           kube-state-metrics from tools/kube-state-metrics
#   bin/prometheus                                   the Prometheus server (cmd/prometheus) from tools/prometheus
#   bin/promtool                                     Prometheus' promtool (cmd/promtool) from tools/prometheus, when named
#   bin/golangci-lint, bin/actionlint                the linters of `make lint`, when named
#   etcd                                             Debian's etcd-server, through apt, when not on PATH
#
# Each binary is built once per machine into the cache of hack/cache.sh, keyed by the module
# version the tools module's go.mod pins, the flags and Go's version, and linked into bin/ with
# a stamp (bin/.<name>.version) holding that key: a second run, or a fresh clone on a machine
# that built them before, costs a few seconds.
#
# Given names (`hack/tools.sh crossplane`), it builds only those, and installs no etcd: the
# Makefile builds the CLI this way, so `make render` and the e2e suite share one binary.
#
# Needs only Go, git and apt (as root, or sudo). Builds are static (CGO_ENABLED=0, as upstream
# ships them), so no C toolchain is needed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/bin
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"
mkdir -p "$bin" "$cache_dir/tools"
go_version=$(go env GOVERSION)

# Two test runs starting at once (two checkouts sharing bin/ by symlink, a re-run while a
# build is going) must not interleave writes to the same binary.
exec 9>"$bin/.tools.lock"
flock 9

export CGO_ENABLED=0
# -buildvcs=false: the tools are built inside this repository, whose (possibly dirty) git
# state says nothing about them and would only defeat the build cache.
export GOFLAGS=-buildvcs=false

log() { printf 'hack/tools.sh: %s\n' "$*" >&2; }
only=("$@")

# version_of DIR MODULE prints the version of MODULE that the tools module in DIR pins.
version_of() {
	(cd "$root/$1" && go list -m -f '{{.Version}}' "$2")
}

# wanted NAME succeeds unless names were given and NAME is not one of them.
wanted() {
	((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $1 "* ]]
}

# fresh NAME KEY succeeds when bin/NAME exists and was linked from the cache entry KEY.
fresh() {
	[[ -x $bin/$1 && -f $bin/.$1.version && $(<"$bin/.$1.version") == "$2" ]]
}

# build NAME WANT DIR PACKAGE LDFLAGS puts PACKAGE of the tools module DIR, at module version
# WANT, into bin/NAME: from the cache, or built into it first. The key covers the module's
# go.mod and go.sum too: a dependency moved (a shared module's upgrade) is a different binary. The build writes to a temporary
# name that is renamed, so an interrupted build never leaves a half-written binary that looks
# current.
build() {
	local name=$1 want=$2 dir=$3 pkg=$4 ldflags=$5
	wanted "$name" || return 0
	local key entry
	key="$want $(cache_key "$want" "$pkg" "$ldflags" "$go_version" "$(cat "$root/$dir/go.mod" "$root/$dir/go.sum" | sha256sum)")"
	entry=$cache_dir/tools/$name@${key##* }
	if fresh "$name" "$key"; then
		return
	fi
	if [[ ! -x $entry ]]; then
		# Under go test, the binary is killed at -timeout plus a minute, and this runs inside it.
		log "building $name ($want); a first build takes minutes (under go test, pass -timeout 30m)"
		local start=$SECONDS
		(cd "$root/$dir" && go build -trimpath -ldflags "$ldflags" -o "$entry.tmp$$" "$pkg")
		mv -f "$entry.tmp$$" "$entry"
		log "built $name in $((SECONDS - start))s"
	fi
	cache_used "$entry"
	cache_link "$entry" "$bin/$name"
	printf '%s\n' "$key" >"$bin/.$name.version"
}

# stamped NAME VERSION ARG... fails unless bin/NAME, run with ARG..., reports VERSION.
stamped() {
	local name=$1 want=$2 got
	shift 2
	wanted "$name" || return 0
	got=$("$bin/$name" "$@" 2>&1) || true
	[[ $got == *"$want"* ]] || {
		log "bin/$name reports ${got:-nothing} as its version, not $want: is its -X name right?"
		exit 1
	}
}

# Kubernetes: the version variables must be set or the binaries report v0.0.0-master, which
# clients (client-go's discovery, Crossplane) cannot compare with anything. Both packages
# carry them, as in upstream's hack/lib/version.sh.
kube=$(version_of tools/controlplane k8s.io/kubernetes)
kube_minor=${kube#v1.}
kube_minor=${kube_minor%%.*}
kube_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	kube_ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean"
done
build kube-apiserver "k8s.io/kubernetes@$kube" tools/controlplane k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager "k8s.io/kubernetes@$kube" tools/controlplane k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build kube-scheduler "k8s.io/kubernetes@$kube" tools/controlplane k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kubelet "k8s.io/kubernetes@$kube" tools/controlplane k8s.io/kubernetes/cmd/kubelet "$kube_ldflags"

# Crossplane: its version variable feeds `crossplane version` and the package manager's
# dependency constraints (a Configuration may require crossplane >= some version). From v2.3
# it is crossplane-runtime's (as upstream's nix/build.nix sets it); before, Crossplane's own.
# A misspelt -X name is ignored by the linker, so stamped() checks what the binary reports.
xp=$(version_of tools/controlplane github.com/crossplane/crossplane/v2)
build crossplane-core "github.com/crossplane/crossplane/v2@$xp" tools/controlplane github.com/crossplane/crossplane/v2/cmd/crossplane \
	"-s -w -X github.com/crossplane/crossplane-runtime/v2/pkg/version.version=$xp"
stamped crossplane-core "$xp" --version
cli=$(version_of tools/crossplane github.com/crossplane/crossplane/v2)
build crossplane "github.com/crossplane/crossplane/v2@$cli" tools/crossplane github.com/crossplane/crossplane/v2/cmd/crank \
	"-s -w -X github.com/crossplane/crossplane/v2/internal/version.version=$cli"
stamped crossplane "$cli" version --client

# Crossplane 1.x: the oldest line the claim flavour supports, run by the suite's second pass.
# Module path without /v2, so its version variable lives at a different import path.
xp1=$(version_of tools/crossplane-v1 github.com/crossplane/crossplane)
xp1_ldflags="-s -w -X github.com/crossplane/crossplane/internal/version.version=$xp1"
build crossplane-core-v1 "github.com/crossplane/crossplane@$xp1" tools/crossplane-v1 github.com/crossplane/crossplane/cmd/crossplane "$xp1_ldflags"
stamped crossplane-core-v1 "$xp1" --version

# provider-kubernetes: applies the Jobs of Object mode in the end-to-end tests.
pk=$(version_of tools/provider-kubernetes github.com/crossplane-contrib/provider-kubernetes)
build provider-kubernetes "github.com/crossplane-contrib/provider-kubernetes@$pk" tools/provider-kubernetes github.com/crossplane-contrib/provider-kubernetes/cmd/provider "-s -w"

# kube-state-metrics: exports ModelDownloads with monitoring/kube-state-metrics.yaml in the
# end-to-end tests. Its version variables feed only its `version` subcommand.
ksm=$(version_of tools/kube-state-metrics k8s.io/kube-state-metrics/v2)
build kube-state-metrics "k8s.io/kube-state-metrics/v2@$ksm" tools/kube-state-metrics k8s.io/kube-state-metrics/v2 "-s -w"
# Prometheus: scrapes it there, evaluates monitoring/alerts.yaml and answers the dashboard's
# queries. Without the builtinassets tag it serves no web UI, which the tests do not use.
prom=$(version_of tools/prometheus github.com/prometheus/prometheus)
build prometheus "github.com/prometheus/prometheus@$prom" tools/prometheus github.com/prometheus/prometheus/cmd/prometheus "-s -w"

# The linters, which only `make lint` needs, and promtool, which `make unit` runs on
# monitoring/: built when named, as the Makefile does.
if ((${#only[@]})); then
	build promtool "github.com/prometheus/prometheus@$prom" tools/prometheus github.com/prometheus/prometheus/cmd/promtool "-s -w"
	lint=$(version_of tools/golangci-lint github.com/golangci/golangci-lint/v2)
	build golangci-lint "github.com/golangci/golangci-lint/v2@$lint" tools/golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint ""
	al=$(version_of tools/actionlint github.com/rhysd/actionlint)
	build actionlint "github.com/rhysd/actionlint@$al" tools/actionlint github.com/rhysd/actionlint/cmd/actionlint ""
fi

# etcd: Debian's etcd-server. /usr/bin is checked as well as PATH because CI may run with a
# reduced PATH. policy-rc.d keeps the package's service from being started: the tests run
# their own etcd on a free port and nothing may be left running.
if ((${#only[@]} == 0)) && ! command -v etcd >/dev/null 2>&1 && [[ ! -x /usr/bin/etcd ]]; then
	bash "$root/hack/apt-install.sh" etcd-server
fi
