package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// Names as the Crossplane Helm chart sets them (templates/deployment.yaml, secret.yaml).
const (
	crossplaneNamespace      = "crossplane-system"
	crossplaneServiceAccount = "crossplane"
	rootCASecret             = "crossplane-root-ca"
	clientTLSSecret          = "crossplane-tls-client"
	serverTLSSecret          = "crossplane-tls-server"
)

// crossplane is Crossplane core running against the test control plane as its own service
// account, with the External package runtime: it runs no package Deployments and calls
// functions at whatever endpoint their FunctionRevision's status names.
type crossplane struct {
	apply *applier
	// rootCA is Crossplane's crossplane-root-ca. Crossplane's function client trusts only
	// servers whose certificate it signed, and presents a client certificate it signed.
	rootCA *certAuthority
}

// coreLine is one line of Crossplane core the suite can run: its binary in bin/ and the
// tools module (and module path) it is built from, whose cluster/crds `core init` installs.
type coreLine struct {
	name, bin, toolsDir, module string
	// rbac is its Helm chart's RBAC, in testdata.
	rbac string
	// healthy is the condition of a healthy package revision (RevisionHealthy from v2
	// on, Healthy in apis/pkg/v1/conditions.go of v1.20.1).
	healthy string
	// v1: Crossplane 1.x, which serves only the claim flavour (v1 XRDs, claims): the
	// suite does not apply the v2 example's XRD or Compositions there.
	v1 bool
}

var coreV2 = coreLine{name: "v2", bin: "crossplane-core", toolsDir: "tools/controlplane", module: "github.com/crossplane/crossplane/v2", rbac: "crossplane-rbac.yaml", healthy: "RevisionHealthy"}

// core is the Crossplane the suite runs: v2 by default; with E2E_CROSSPLANE=v1, v1.20,
// for the claim flavour on the 1.x line (the Makefile runs that pass with -run).
var core = map[string]coreLine{
	"":   coreV2,
	"v2": coreV2,
	"v1": {name: "v1", bin: "crossplane-core-v1", toolsDir: "tools/crossplane-v1", module: "github.com/crossplane/crossplane", rbac: "crossplane-v1-rbac.yaml", healthy: "Healthy", v1: true},
}[os.Getenv("E2E_CROSSPLANE")]

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

var (
	xpOnce sync.Once
	xp     *crossplane
	errXP  error
)

// useCrossplane returns Crossplane core, starting it the first time a test needs it.
func useCrossplane(t testing.TB) *crossplane {
	t.Helper()
	cp := useCluster(t)
	xpOnce.Do(func() { xp, errXP = startCrossplane(cp) })
	if errXP != nil {
		t.Fatalf("start Crossplane: %v", errXP)
	}
	return xp
}

// startCrossplane does what the Helm chart does: RBAC, `crossplane core init` (CRDs, TLS
// Secrets), then `crossplane core start`. Webhooks are off, as with the chart's
// webhooks.enabled=false: the apiserver reaches webhooks through a Service, and there is
// no kube-proxy here to route one.
func startCrossplane(cp *controlPlane) (*crossplane, error) {
	ctx := context.Background()
	a, err := newApplier(cp)
	if err != nil {
		return nil, err
	}
	if err := a.applyFile(ctx, filepath.Join("testdata", core.rbac)); err != nil {
		return nil, err
	}
	if err := waitRule(ctx, cp, "crossplane", "apiextensions.k8s.io", "customresourcedefinitions", 2*time.Minute); err != nil {
		return nil, err
	}
	// A bound token of the real ServiceAccount, so every call Crossplane makes is checked
	// against the chart's RBAC, as in a cluster.
	tr, err := cp.kube.CoreV1().ServiceAccounts(crossplaneNamespace).CreateToken(ctx, crossplaneServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](6 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for %s/%s: %w", crossplaneNamespace, crossplaneServiceAccount, err)
	}
	if err := cp.writeKubeconfig("crossplane", tr.Status.Token); err != nil {
		return nil, err
	}

	crds, err := crossplaneCRDs(cp.repoRoot)
	if err != nil {
		return nil, err
	}
	env := envList(
		"KUBECONFIG", cp.kubeconfigPath("crossplane"),
		"POD_NAMESPACE", crossplaneNamespace,
		"POD_SERVICE_ACCOUNT", crossplaneServiceAccount,
		"ENABLE_WEBHOOKS", "false",
		// 1.x's `core init` reads only this name (v2 and 1.x's `core start`, the one above).
		"WEBHOOK_ENABLED", "false",
		"TLS_CA_SECRET_NAME", rootCASecret,
		"TLS_SERVER_SECRET_NAME", serverTLSSecret,
		"TLS_CLIENT_SECRET_NAME", clientTLSSecret,
	)
	if core.v1 {
		// Crossplane 1.x reads its CRDs from /crds, where its image has them, and has no
		// setting for another path (cmd/crossplane/core/init.go of v1.20.1); v2 reads
		// CRDS_PATH.
		remove, err := placeCRDs(crds)
		if err != nil {
			return nil, err
		}
		defer remove()
	}
	if err := crossplaneInit(cp, append(env, "CRDS_PATH="+crds)); err != nil {
		return nil, err
	}

	// Crossplane reads its client certificate from files, as mounted from the Secret in a pod.
	clientDir := filepath.Join(cp.dir, "crossplane-tls-client")
	client, err := cp.kube.CoreV1().Secrets(crossplaneNamespace).Get(ctx, clientTLSSecret, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if err := writeSecretFiles(clientDir, client.Data, "tls.crt", "tls.key", "ca.crt"); err != nil {
		return nil, fmt.Errorf("secret %s: %w", clientTLSSecret, err)
	}
	root, err := cp.kube.CoreV1().Secrets(crossplaneNamespace).Get(ctx, rootCASecret, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	ca, err := parseCertAuthority(root.Data["tls.crt"], root.Data["tls.key"])
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", rootCASecret, err)
	}

	// The package cache, an emptyDir in the chart: Crossplane does not create it, and a
	// package it cannot cache it cannot parse.
	cacheDir := filepath.Join(cp.dir, "xpkg-cache")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, err
	}
	err = startWithRetry(2, 2*time.Minute, func(ports []int) (*process, func() error, error) {
		startEnv := append(slices.Clip(env),
			"PACKAGE_RUNTIME=External",
			"TLS_CLIENT_CERTS_DIR="+clientDir,
			"XPKG_CACHE_DIR="+cacheDir,
			"METRICS_PORT="+strconv.Itoa(ports[0]),
			"HEALTH_PROBE_PORT="+strconv.Itoa(ports[1]),
		)
		p, err := startProcess(cp.logDir, "crossplane", startEnv, cp.bin(core.bin), "core", "start", "--debug")
		if err != nil {
			return nil, nil, err
		}
		cp.track(p)
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
		return p, func() error { return httpOK(http.DefaultClient, url, "") }, nil
	})
	if err != nil {
		return nil, err
	}
	return &crossplane{apply: a, rootCA: ca}, nil
}

// crossplaneInit runs `crossplane core init` until it succeeds, as the kubelet restarts a
// failed init container. A first run can fail on its own: it applies the core CRDs and then
// at once uses one of them (Lock) before the apiserver serves it.
func crossplaneInit(cp *controlPlane, env []string) error {
	var err error
	for range 5 {
		var p *process
		if p, err = startProcess(cp.logDir, "crossplane-init", env, cp.bin(core.bin), "core", "init"); err != nil {
			return err
		}
		cp.track(p)
		select {
		case <-p.done:
			if p.err == nil {
				return nil
			}
			err = fmt.Errorf("crossplane core init: %w; log tail:\n%s", p.err, p.tail(30))
		case <-time.After(3 * time.Minute):
			return fmt.Errorf("crossplane core init still running after 3m; log tail:\n%s", p.tail(30))
		}
		time.Sleep(2 * time.Second)
	}
	return err
}

// crossplaneCRDs is cluster/crds of the Crossplane module that the core's tools module
// pins: the CRDs `crossplane core init` installs (a pod has them baked into its image at
// /crds).
func crossplaneCRDs(root string) (string, error) {
	mod, err := moduleDir(root, core.toolsDir, core.module)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(mod, "cluster", "crds")
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// v1CRDsPath is where Crossplane 1.x's `core init` reads the CRDs it installs.
const v1CRDsPath = "/crds"

// placeCRDs copies dir's CRDs to /crds for as long as `core init` needs them, and returns
// what removes them again. A copy, not a link: init walks /crds without following links
// (parser.NewFsReadCloser of crossplane-runtime v1.20). An existing /crds is not ours to
// replace, and is an error.
func placeCRDs(dir string) (func(), error) {
	if _, err := os.Lstat(v1CRDsPath); err == nil {
		return nil, fmt.Errorf("Crossplane 1.x reads its CRDs from %s, which is already there", v1CRDsPath)
	}
	if err := os.CopyFS(v1CRDsPath, os.DirFS(dir)); err != nil {
		_ = os.RemoveAll(v1CRDsPath)
		return nil, fmt.Errorf("Crossplane 1.x reads its CRDs from %s: %w", v1CRDsPath, err)
	}
	return func() { _ = os.RemoveAll(v1CRDsPath) }, nil
}

// writeSecretFiles writes the named keys of a Secret's data to dir, one file per key.
func writeSecretFiles(dir string, data map[string][]byte, keys ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, k := range keys {
		if len(data[k]) == 0 {
			return fmt.Errorf("no %s", k)
		}
		if err := os.WriteFile(filepath.Join(dir, k), data[k], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// waitRule waits until the clusterrole-aggregation controller has folded a rule on the
// given API group and resource into the named aggregated ClusterRole.
func waitRule(ctx context.Context, cp *controlPlane, role, group, resource string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r, err := cp.kube.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
		if err == nil {
			for _, rule := range r.Rules {
				if slices.Contains(rule.APIGroups, group) && (slices.Contains(rule.Resources, resource) || slices.Contains(rule.Resources, "*")) {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ClusterRole %s has no rule on %s %s after %s (last error: %w)", role, group, resource, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// xrdClusterRole is the ClusterRole Crossplane's RBAC manager renders for an XRD so that
// Crossplane core may manage its XRs (RenderClusterRoles in internal/controller/rbac/
// definition/roles.go of crossplane v2.2.1, the "aggregate-to-crossplane" role). The RBAC
// manager is not run here; this is its output for one XRD: its XRs and, for a legacy XRD,
// its claims.
func xrdClusterRole(xrdName, group string, plurals ...string) *rbacv1.ClusterRole {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "crossplane:composite:" + xrdName + ":aggregate-to-crossplane",
			Labels: map[string]string{"rbac.crossplane.io/aggregate-to-crossplane": "true"},
		},
	}
	for _, plural := range plurals {
		role.Rules = append(role.Rules,
			rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{plural, plural + "/status"}, Verbs: []string{rbacv1.VerbAll}},
			rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{plural + "/finalizers"}, Verbs: []string{"update"}},
		)
	}
	return role
}

// applyXRD applies the XRD in path, with the ClusterRole the RBAC manager would give
// Crossplane for it, and waits until Crossplane reports it Established.
func (x *crossplane) applyXRD(ctx context.Context, path string) error {
	objs, err := readObjects(path)
	if err != nil {
		return err
	}
	if len(objs) != 1 || objs[0].GetKind() != "CompositeResourceDefinition" {
		return fmt.Errorf("%s: want exactly one CompositeResourceDefinition", path)
	}
	return x.establishXRD(ctx, objs[0])
}

// establishXRD applies an XRD, with the ClusterRole the RBAC manager would give Crossplane
// for it, and waits until Crossplane reports it Established.
func (x *crossplane) establishXRD(ctx context.Context, xrd *unstructured.Unstructured) error {
	group, _, _ := unstructured.NestedString(xrd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(xrd.Object, "spec", "names", "plural")
	plurals := []string{plural}
	if claims, ok, _ := unstructured.NestedString(xrd.Object, "spec", "claimNames", "plural"); ok {
		plurals = append(plurals, claims)
	}
	_, err := cluster.kube.RbacV1().ClusterRoles().Create(ctx, xrdClusterRole(xrd.GetName(), group, plurals...), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ClusterRole for XRD %s: %w", xrd.GetName(), err)
	}
	if err := x.apply.apply(ctx, xrd); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := x.apply.get(ctx, xrd)
		if err == nil && conditionStatus(got, "Established") == "True" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("XRD %s not Established after 2m: %w", xrd.GetName(), err)
			}
			return fmt.Errorf("XRD %s not Established after 2m; conditions %v", xrd.GetName(), conditions(got))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// conditions returns an object's status.conditions.
func conditions(u *unstructured.Unstructured) []map[string]any {
	l, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []map[string]any
	for _, c := range l {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// conditionStatus returns the status of the condition of the given type, "" if absent.
func conditionStatus(u *unstructured.Unstructured, typ string) string {
	for _, c := range conditions(u) {
		if c["type"] == typ {
			s, _ := c["status"].(string)
			return s
		}
	}
	return ""
}

// TestCrossplaneEstablishesXRD proves Crossplane core runs against the control plane with
// the chart's RBAC: a v2 (namespaced) XRD becomes Established and its CRD is served.
func TestCrossplaneEstablishesXRD(t *testing.T) {
	x := useCrossplane(t)
	if err := x.applyXRD(context.Background(), filepath.Join("testdata", "xrd-widget.yaml")); err != nil {
		t.Fatal(err)
	}
	crd, err := cluster.dynamic.Resource(crdResource).Get(context.Background(), "widgets.e2e.hfops.kamal.dev", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the XRD's CRD: %v", err)
	}
	if scope, _, _ := unstructured.NestedString(crd.Object, "spec", "scope"); scope != "Namespaced" {
		t.Errorf("CRD scope = %q, want Namespaced (a v2 XR)", scope)
	}
}
