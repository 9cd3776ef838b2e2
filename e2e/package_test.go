package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

var functionResource = schema.GroupVersionResource{Group: "pkg.crossplane.io", Version: "v1", Resource: "functions"}

// buildFunctionPackage builds the function's xpkg as a release would: a static binary in
// an OCI runtime image made without Docker (hack/runtime-image.sh), embedded by
// the real `crossplane xpkg build` into the package of package/.
func buildFunctionPackage(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	run := func(dir string, env []string, bin string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
		}
	}
	root := cluster.repoRoot
	run(root, nil, "bash", filepath.Join(root, "hack", "runtime-image.sh"), filepath.Join(tmp, "runtime.tar"))
	xpkg := filepath.Join(tmp, "function.xpkg")
	run(root, nil, cluster.bin("crossplane"), "xpkg", "build", "--package-root=package",
		"--embed-runtime-image-tarball="+filepath.Join(tmp, "runtime.tar"), "--package-file="+xpkg)
	return xpkg
}

// TestFunctionPackageInstalls takes the package manager's path for real: the built xpkg is
// pushed to an OCI registry on loopback (go-containerregistry's, over plain HTTP, which
// registry clients use for loopback addresses), and a pkg.crossplane.io Function naming it
// is applied. Crossplane pulls the package, parses and checks it (its crossplane.yaml, its
// Crossplane version constraint), installs the Function and creates a healthy
// FunctionRevision with the package's capabilities (v2; Crossplane 1.20's package manager,
// under E2E_CROSSPLANE=v1, shows that it accepts the package's constraint). With the External runtime no
// Deployment starts: the test plays that runtime's part, and the other tests serve the
// function themselves.
func TestFunctionPackageInstalls(t *testing.T) {
	x := useCrossplane(t)
	ctx := context.Background()
	ref, digest := pushPackage(t, startRegistry(t), "hfops/function-hf-download:v0.0.0-e2e", buildFunctionPackage(t))

	const fn = "function-hf-download-from-registry"
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pkg.crossplane.io/v1",
		"kind":       "Function",
		"metadata":   map[string]any{"name": fn},
		"spec":       map[string]any{"package": ref.String()},
	}}
	if err := x.apply.apply(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.dynamic.Resource(functionResource).Delete(context.Background(), fn, metav1.DeleteOptions{})
	})

	waitFor(t, 3*time.Minute, "the Function installed from the registry", func() (bool, string) {
		f, err := cluster.dynamic.Resource(functionResource).Get(ctx, fn, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return conditionStatus(f, "Installed") == "True", fmt.Sprint(conditions(f))
	})
	var rev *unstructured.Unstructured
	waitFor(t, 3*time.Minute, "the FunctionRevision of the pushed package", func() (bool, string) {
		l, err := cluster.dynamic.Resource(functionRevisionResource).List(ctx, metav1.ListOptions{LabelSelector: "pkg.crossplane.io/package=" + fn})
		if err != nil {
			return false, err.Error()
		}
		if len(l.Items) != 1 {
			return false, fmt.Sprintf("%d revisions", len(l.Items))
		}
		rev = &l.Items[0]
		return true, ""
	})
	actAsExternalRuntime(t, x, rev.GetName(), fn)
	waitFor(t, 3*time.Minute, "a healthy FunctionRevision of the pushed package", func() (bool, string) {
		r, err := cluster.dynamic.Resource(functionRevisionResource).Get(ctx, rev.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		rev = r
		return conditionStatus(rev, core.healthy) == "True", fmt.Sprint(conditions(rev))
	})
	if got, _, _ := unstructured.NestedString(rev.Object, "status", "resolvedImage"); !strings.HasSuffix(got, digest.String()) && got != ref.String() {
		t.Errorf("revision resolved image %q, want the pushed %s (%s)", got, ref, digest)
	}
	// Package capabilities came with v2; a 1.x FunctionRevision has no such field.
	if caps, _, _ := unstructured.NestedStringSlice(rev.Object, "status", "capabilities"); !core.v1 && !slices.Equal(caps, []string{"composition"}) {
		t.Errorf("revision capabilities %v, want [composition] from the package's metadata", caps)
	}
}

// startRegistry serves an OCI registry on loopback for the test and returns its host.
func startRegistry(t *testing.T) string {
	t.Helper()
	reg := httptest.NewServer(registry.New())
	t.Cleanup(reg.Close)
	return strings.TrimPrefix(reg.URL, "http://")
}

// pushPackage pushes the xpkg at path to host as repo (with its tag), and returns its
// reference and digest.
func pushPackage(t *testing.T, host, repo, path string) (name.Reference, v1.Hash) {
	t.Helper()
	ref, err := name.ParseReference(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, digest
}

// xpkgBuild builds the package whose root is dir with the Crossplane CLI, into the test's
// temporary directory.
func xpkgBuild(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(dir)+".xpkg")
	cmd := exec.Command(cluster.bin("crossplane"), "xpkg", "build", "--package-root="+dir, "--package-file="+out)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crossplane xpkg build %s: %v\n%s", dir, err, b)
	}
	return out
}

var lockResource = schema.GroupVersionResource{Group: "pkg.crossplane.io", Version: "v1beta1", Resource: "locks"}

// TestLegacyConfigurationDependenciesResolve takes configuration/legacy through the package
// manager: its crossplane.yaml as it is but for the registry its dependencies are pulled
// from (a loopback one instead of xpkg.crossplane.io), its XRD and Composition
// example/legacy's moved to a group of their own (legacyAPI), with the function's package tagged
// v0.1.0 and provider-kubernetes' package metadata (its crossplane.yaml, without the CRDs
// the suite installs itself) tagged with its version. Crossplane accepts the
// Configuration's own Crossplane constraint and resolves both dependencies' version
// constraints to those tags in its Lock. On Crossplane 1.20 (E2E_CROSSPLANE=v1) this is
// the proof that the claim flavour installs there.
func TestLegacyConfigurationDependenciesResolve(t *testing.T) {
	x := useCrossplane(t)
	ctx := context.Background()
	host := startRegistry(t)

	pkDir, err := moduleDir(cluster.repoRoot, "tools/provider-kubernetes", "github.com/crossplane-contrib/provider-kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	pkVersion := "v1.0.0"
	provider := t.TempDir()
	copyFile(t, filepath.Join(pkDir, "package", "crossplane.yaml"), filepath.Join(provider, "crossplane.yaml"), nil)
	pushPackage(t, host, "crossplane-contrib/provider-kubernetes:"+pkVersion, xpkgBuild(t, provider))
	pushPackage(t, host, "hfops/function-hf-download:v0.1.0", buildFunctionPackage(t))

	config := t.TempDir()
	repoRegistry := func(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), "xpkg.crossplane.io/", host+"/")) }
	copyFile(t, filepath.Join(cluster.repoRoot, "configuration", "legacy", "crossplane.yaml"), filepath.Join(config, "crossplane.yaml"), repoRegistry)
	xrd, comp, err := legacyAPI("configuration.e2e.hfops.kamal.dev")
	if err != nil {
		t.Fatal(err)
	}
	for f, obj := range map[string]*unstructured.Unstructured{"definition.yaml": xrd, "composition.yaml": comp} {
		b, err := yaml.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(config, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref, _ := pushPackage(t, host, "hfops/configuration-hf-download-claims:v0.0.0-e2e", xpkgBuild(t, config))

	const cfg = "configuration-hf-download-claims"
	configurations := schema.GroupVersionResource{Group: "pkg.crossplane.io", Version: "v1", Resource: "configurations"}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pkg.crossplane.io/v1",
		"kind":       "Configuration",
		"metadata":   map[string]any{"name": cfg},
		"spec":       map[string]any{"package": ref.String()},
	}}
	if err := x.apply.apply(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.dynamic.Resource(configurations).Delete(context.Background(), cfg, metav1.DeleteOptions{})
	})

	want := map[string]string{
		host + "/hfops/function-hf-download":             "v0.1.0",
		host + "/crossplane-contrib/provider-kubernetes": pkVersion,
	}
	waitFor(t, 3*time.Minute, "the Lock to resolve the Configuration's dependencies", func() (bool, string) {
		lock, err := cluster.dynamic.Resource(lockResource).Get(ctx, "lock", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pkgs, _, _ := unstructured.NestedSlice(lock.Object, "packages")
		got := map[string]string{}
		for _, p := range pkgs {
			m, _ := p.(map[string]any)
			src, _ := m["source"].(string)
			if _, ok := want[src]; ok {
				got[src], _ = m["version"].(string)
			}
		}
		return maps.Equal(got, want), fmt.Sprintf("resolved %v, want %v", got, want)
	})
}

// copyFile copies src to dst, through edit when it is not nil.
func copyFile(t *testing.T, src, dst string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		b = edit(b)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// actAsExternalRuntime does for a FunctionRevision what an External package runtime does
// before Crossplane establishes the package's objects: it names, in the revision's status,
// the Secret holding the function's server certificate (signed by Crossplane's root CA).
func actAsExternalRuntime(t *testing.T, x *crossplane, revision, service string) {
	t.Helper()
	ctx := context.Background()
	crt, key, err := x.rootCA.issue(service, []string{service, service + "." + crossplaneNamespace + ".svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := revision + "-tls-server"
	if core.v1 {
		// Crossplane 1.x names it itself, after the package, and sets it in the revision's
		// status (Function.GetTLSServerSecretName, apis/pkg/v1/interfaces.go of v1.20.1).
		name = service + "-tls-server"
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: crossplaneNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": x.rootCA.certPEM},
	}
	if _, err := cluster.kube.CoreV1().Secrets(crossplaneNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.kube.CoreV1().Secrets(crossplaneNamespace).Delete(context.Background(), secret.Name, metav1.DeleteOptions{})
	})
	status := fmt.Sprintf(`{"status":{"tlsServerSecretName":%q}}`, secret.Name)
	if _, err := cluster.dynamic.Resource(functionRevisionResource).Patch(ctx, revision, types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("name the TLS Secret in %s's status: %v", revision, err)
	}
}
