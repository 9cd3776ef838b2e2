package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// functionName is the name the example Composition's pipeline calls the function by.
const functionName = "function-hf-download"

var functionRevisionResource = schema.GroupVersionResource{Group: "pkg.crossplane.io", Version: "v1", Resource: "functionrevisions"}

var (
	fnOnce sync.Once
	errFn  error
)

// useFunction returns Crossplane with the function under test registered and the example
// XRD, Composition and RBAC applied, setting all of that up the first time.
func useFunction(t testing.TB) *crossplane {
	t.Helper()
	x := useCrossplane(t)
	fnOnce.Do(func() { errFn = startFunction(cluster, x) })
	if errFn != nil {
		t.Fatalf("start the function: %v", errFn)
	}
	return x
}

// startFunction builds the function from the repository root and runs it as Crossplane's
// External package runtime expects: serving mTLS with a certificate Crossplane's root CA
// signed, at the endpoint an Active FunctionRevision's status names.
func startFunction(cp *controlPlane, x *crossplane) error {
	ctx := context.Background()
	bin := filepath.Join(cp.dir, "function")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = cp.repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build the function: %w\n%s", err, out)
	}

	if _, err := serveFunctionRevision(cp, x, bin, functionName, 1); err != nil {
		return err
	}

	// What a platform team applies: the API, Crossplane's permissions on Jobs and pods, and
	// the Composition whose pipeline calls the function. Crossplane 1.x has no v2 XRDs: it
	// gets the permissions alone, and the claim flavour's API with provider-kubernetes.
	if !core.v1 {
		if err := x.applyXRD(ctx, exampleFile("definition.yaml")); err != nil {
			return err
		}
		if err := x.apply.applyFile(ctx, exampleFile("composition.yaml")); err != nil {
			return err
		}
	}
	if err := x.apply.applyFile(ctx, exampleFile("rbac.yaml")); err != nil {
		return err
	}
	// Crossplane may only compose Jobs once the aggregation controller has folded
	// example/rbac.yaml into its ClusterRole.
	return waitRule(ctx, cp, "crossplane", "batch", "jobs", 2*time.Minute)
}

// exampleFile is a path in the repository's example/ directory.
func exampleFile(name string) string {
	return filepath.Join(cluster.repoRoot, "example", name)
}

// serveFunctionRevision runs bin as revision revision of the function package pkg, as
// Crossplane's External package runtime expects: serving mTLS with a certificate Crossplane's
// root CA signed, at the endpoint the Active FunctionRevision's status names. The revision is
// paused so that Crossplane's package manager does not try to pull its image (there is no
// registry here); Crossplane still calls the function through it.
// args are the function's flags beyond those.
func serveFunctionRevision(cp *controlPlane, x *crossplane, bin, pkg string, revision int64, args ...string) (*process, error) {
	ctx := context.Background()
	certs := filepath.Join(cp.dir, fmt.Sprintf("%s-%d-tls", pkg, revision))
	crt, key, err := x.rootCA.issue(pkg,
		[]string{pkg, pkg + "." + crossplaneNamespace, pkg + "." + crossplaneNamespace + ".svc"},
		[]net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	if err := writeSecretFiles(certs, map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": x.rootCA.certPEM}, "tls.crt", "tls.key", "ca.crt"); err != nil {
		return nil, err
	}

	logName := "function"
	if pkg != functionName || revision > 1 {
		logName = fmt.Sprintf("%s-%d", pkg, revision)
	}
	var endpoint string
	var fn *process
	err = startWithRetry(1, time.Minute, func(ports []int) (*process, func() error, error) {
		endpoint = "127.0.0.1:" + strconv.Itoa(ports[0])
		p, err := startProcess(cp.logDir, logName, nil, bin, append([]string{
			"--tls-certs-dir=" + certs,
			"--address=" + endpoint,
			"--debug",
			// Metrics would take :8080 on every interface; the tests do not read them.
			"--metrics-address=",
		}, args...)...)
		if err != nil {
			return nil, nil, err
		}
		cp.track(p)
		fn = p
		return p, listening(endpoint), nil
	})
	if err != nil {
		return nil, err
	}

	name := pkg + "-e2e"
	if revision > 1 {
		name = fmt.Sprintf("%s-e2e-%d", pkg, revision)
	}
	rev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pkg.crossplane.io/v1",
		"kind":       "FunctionRevision",
		"metadata": map[string]any{
			"name":        name,
			"labels":      map[string]any{"pkg.crossplane.io/package": pkg},
			"annotations": map[string]any{"crossplane.io/paused": "true"},
		},
		"spec": map[string]any{
			"desiredState": "Active",
			"image":        fmt.Sprintf("xpkg.crossplane.io/hfops/%s:e2e-%d", pkg, revision),
			"revision":     revision,
		},
	}}
	if err := x.apply.apply(ctx, rev); err != nil {
		return nil, err
	}
	status := fmt.Sprintf(`{"status":{"endpoint":%q,"capabilities":["composition"]}}`, endpoint)
	if _, err := cp.dynamic.Resource(functionRevisionResource).Patch(ctx, rev.GetName(), types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status"); err != nil {
		return nil, fmt.Errorf("set the FunctionRevision's endpoint: %w", err)
	}
	return fn, nil
}
