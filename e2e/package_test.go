package e2e

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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

// TestRelease takes the release path a user takes from a clone, for real: `make package` and
// `make push REGISTRY=127.0.0.1:<port>/hfops` against a private OCI registry on loopback
// (go-containerregistry's, over plain HTTP, which registry clients use for loopback
// addresses, behind basic auth), with the credentials in a docker config as `docker login`
// writes it. Then the package manager installs exactly what was pushed: a pkg.crossplane.io
// Function naming it, with a packagePullSecret, makes Crossplane pull the package, parse and
// check it (its crossplane.yaml, its Crossplane version constraint), install the Function and
// create a healthy FunctionRevision with the package's capabilities (v2; Crossplane 1.20's
// package manager, under E2E_CROSSPLANE=v1, shows that it accepts the package). With the External
// runtime no Deployment starts: the test plays that runtime's part, and the other tests serve
// the function themselves.
func TestRelease(t *testing.T) {
	x := useCrossplane(t)
	arches := releaseArches(t)
	ctx := context.Background()

	// Its request log would bury the test's own output.
	registryHandler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	// A test credential for a registry that lives as long as the test.
	login := &authn.Basic{Username: "release", Password: "e2e-registry-password"}
	auth := base64.StdEncoding.EncodeToString([]byte(login.Username + ":" + login.Password))
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Basic "+auth {
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		registryHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	dockerConfigJSON := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	const version = "v0.0.0-e2e"
	repo := host + "/hfops"
	out := t.TempDir()
	dockerConfig := t.TempDir()
	makeRelease := func(target, registry string) (string, error) {
		cmd := exec.Command("make", "--no-print-directory", target, "REGISTRY="+registry, "VERSION="+version, "OUTPUT="+out,
			"ARCHES="+strings.Join(arches, " "))
		cmd.Dir = cluster.repoRoot
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if got, err := makeRelease("package", repo); err != nil {
		t.Fatalf("make package: %v\n%s", err, got)
	}
	checkRelease(t, out, repo, version, arches)

	if got, err := makeRelease("push", "127.0.0.1:1/elsewhere"); err == nil || !strings.Contains(got, "not "+version+" for 127.0.0.1:1/elsewhere") {
		t.Errorf("make push to another registry than the release names must refuse; got %v\n%s", err, got)
	}
	if got, err := makeRelease("push", repo); err == nil || !strings.Contains(got, "401 Unauthorized") {
		t.Errorf("make push without the registry's credentials in the docker config must fail; got %v\n%s", err, got)
	}
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(dockerConfigJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	pushed, err := makeRelease("push", repo)
	if err != nil {
		t.Fatalf("make push: %v\n%s", err, pushed)
	}
	t.Logf("make push:\n%s", pushed)
	for _, want := range []string{
		"  crossplane xpkg install configuration " + repo + "/configuration-hf-download:" + version + "\n",
		"  crossplane xpkg install configuration " + repo + "/configuration-hf-download-claims:" + version + "\n",
		"  crossplane xpkg install function " + repo + "/function-hf-download:" + version + " function-hf-download\n",
	} {
		if !strings.Contains(pushed, want) {
			t.Errorf("make push does not print %q", want)
		}
	}
	for _, name := range []string{"function-hf-download", "hf-downloader"} {
		platforms := pushedPlatforms(t, repo+"/"+name+":"+version, remote.WithContext(ctx), remote.WithAuth(login))
		slices.Sort(platforms)
		var want []string
		for _, arch := range arches {
			want = append(want, "linux/"+arch)
		}
		if !slices.Equal(platforms, want) {
			t.Errorf("the pushed %s is for %v, want %v", name, platforms, want)
		}
	}
	for _, name := range []string{"configuration-hf-download", "configuration-hf-download-claims"} {
		if _, err := remote.Image(mustReference(t, repo+"/"+name+":"+version), remote.WithContext(ctx), remote.WithAuth(login)); err != nil {
			t.Errorf("the pushed %s: %v", name, err)
		}
	}

	// Crossplane pulls with the same credentials, from a pull Secret of its namespace.
	pullSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "release-registry", Namespace: crossplaneNamespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(dockerConfigJSON)},
	}
	if _, err := cluster.kube.CoreV1().Secrets(crossplaneNamespace).Create(ctx, pullSecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.kube.CoreV1().Secrets(crossplaneNamespace).Delete(context.Background(), pullSecret.Name, metav1.DeleteOptions{})
	})
	ref := repo + "/function-hf-download:" + version
	const fn = "function-hf-download-from-registry"
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pkg.crossplane.io/v1",
		"kind":       "Function",
		"metadata":   map[string]any{"name": fn},
		"spec": map[string]any{
			"package":            ref,
			"packagePullSecrets": []any{map[string]any{"name": pullSecret.Name}},
		},
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
	amd64, err := tarball.ImageFromPath(filepath.Join(out, "function-hf-download-amd64.xpkg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := amd64.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedString(rev.Object, "status", "resolvedImage"); !strings.HasSuffix(got, digest.String()) && got != ref {
		t.Errorf("revision resolved image %q, want the pushed %s (amd64: %s)", got, ref, digest)
	}
	// Package capabilities came with v2; a 1.x FunctionRevision has no such field.
	if caps, _, _ := unstructured.NestedStringSlice(rev.Object, "status", "capabilities"); !core.v1 && !slices.Equal(caps, []string{"composition"}) {
		t.Errorf("revision capabilities %v, want [composition] from the package's metadata", caps)
	}
}

// pushedPlatforms are the platforms of what ref names: an index's manifests (`crossplane xpkg
// push` of several platforms' files), or one image's own (of one file).
func pushedPlatforms(t testing.TB, ref string, options ...remote.Option) []string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("the pushed %s: %v", ref, err)
		}
	}
	desc, err := remote.Get(mustReference(t, ref), options...)
	must(err)
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		must(err)
		cfg, err := img.ConfigFile()
		must(err)
		return []string{cfg.Platform().String()}
	}
	idx, err := desc.ImageIndex()
	must(err)
	m, err := idx.IndexManifest()
	must(err)
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	return platforms
}

// releaseArches are the platforms TestRelease builds, sorted: by default the machine's own,
// as another architecture's downloader image is debootstrapped under qemu (minutes of a cold
// run); E2E_RELEASE_ARCHES="amd64 arm64" builds both, as `make package` does by default and
// the CI workflow's package job does on every change.
func releaseArches(t testing.TB) []string {
	t.Helper()
	arches := strings.Fields(os.Getenv("E2E_RELEASE_ARCHES"))
	if len(arches) == 0 {
		arches = []string{runtime.GOARCH}
	}
	for _, arch := range arches {
		if arch != "amd64" && arch != "arm64" {
			t.Fatalf("E2E_RELEASE_ARCHES=%q: want amd64, arm64 or both", os.Getenv("E2E_RELEASE_ARCHES"))
		}
	}
	slices.Sort(arches)
	return slices.Compact(arches)
}

// checkRelease checks what `make package` wrote into out: every package and image, for
// every platform, naming the registry and version it was built for.
func checkRelease(t testing.TB, out, repo, version string, arches []string) {
	t.Helper()
	var files []string
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		files = append(files, e.Name())
	}
	want := []string{"configuration-hf-download-claims.xpkg", "configuration-hf-download.xpkg", "release.env"}
	for _, arch := range arches {
		want = append(want, "function-hf-download-"+arch+".xpkg", "hf-downloader-"+arch+".tar")
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, files); diff != "" {
		t.Fatalf("make package wrote (-want +got):\n%s", diff)
	}
	if got, err := os.ReadFile(filepath.Join(out, "release.env")); err != nil || string(got) != "VERSION="+version+"\nREGISTRY="+repo+"\nARCHES="+strings.Join(arches, " ")+"\n" {
		t.Errorf("release.env: %q, %v", got, err)
	}
	for _, arch := range arches {
		pkg := readImage(t, filepath.Join(out, "function-hf-download-"+arch+".xpkg"), "", "package.yaml", "function")
		for _, want := range []string{"kind: Function", "name: function-hf-download", "kind: CustomResourceDefinition", "name: inputs.hfdownload.fn.hfops.kamal.dev"} {
			if !strings.Contains(pkg.files["package.yaml"], want) {
				t.Errorf("the %s function package lacks %q", arch, want)
			}
		}
		// Crossplane 1.20's package manager installs it: the claim flavour runs there.
		if got := crossplaneConstraint(t, pkg.files["package.yaml"], "Function"); got != ">=v1.20.0" {
			t.Errorf("the %s function package asks for Crossplane %q, want >=v1.20.0", arch, got)
		}
		if pkg.arch != arch || pkg.files["function"] == "" || pkg.user != "65532:65532" {
			t.Errorf("the %s function package embeds a runtime image for %s, user %q, with /function: %t", arch, pkg.arch, pkg.user, pkg.files["function"] != "")
		}
		dl := readImage(t, filepath.Join(out, "hf-downloader-"+arch+".tar"), repo+"/hf-downloader:"+version, "usr/local/bin/hf")
		if dl.arch != arch || dl.user != "1000:1000" || dl.files["usr/local/bin/hf"] == "" {
			t.Errorf("the %s downloader image is for %s, user %q, with hf: %t", arch, dl.arch, dl.user, dl.files["usr/local/bin/hf"] != "")
		}
		if arch == runtime.GOARCH {
			// The release's own binary, as the package embeds it, names its default image.
			bin := filepath.Join(t.TempDir(), "function")
			if err := os.WriteFile(bin, []byte(pkg.files["function"]), 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := exec.Command(bin, "--version").CombinedOutput()
			if want := version + " (default image " + repo + "/hf-downloader:" + version + ")\n"; err != nil || string(got) != want {
				t.Errorf("the packaged function's --version: %q, %v; want %q", got, err, want)
			}
		}
	}
	// Namespaced XRs exist from v2 on; claims run on 1.20 too.
	for name, crossplane := range map[string]string{"configuration-hf-download": ">=v2.0.0", "configuration-hf-download-claims": ">=v1.20.0"} {
		pkg := readImage(t, filepath.Join(out, name+".xpkg"), "", "package.yaml")
		if got := crossplaneConstraint(t, pkg.files["package.yaml"], "Configuration"); got != crossplane {
			t.Errorf("%s asks for Crossplane %q, want %q", name, got, crossplane)
		}
		// The package manager names the function it installs as a dependency after its
		// repository path (xpkg.ToDNSLabel): "hfops/function-hf-download".
		for _, want := range []string{"kind: Configuration", "kind: CompositeResourceDefinition", "kind: Composition",
			"package: " + repo + "/function-hf-download\n    version: '>=" + version + "'\n",
			"functionRef:\n      name: hfops-function-hf-download\n"} {
			if !strings.Contains(pkg.files["package.yaml"], want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
}

// crossplaneConstraint is spec.crossplane.version of the package's metadata object of the
// given kind, the Crossplane versions it installs on.
func crossplaneConstraint(t testing.TB, pkg, kind string) string {
	t.Helper()
	for _, doc := range strings.Split(pkg, "\n---") {
		var meta struct {
			Kind string `json:"kind"`
			Spec struct {
				Crossplane struct {
					Version string `json:"version"`
				} `json:"crossplane"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err == nil && meta.Kind == kind {
			return meta.Spec.Crossplane.Version
		}
	}
	t.Fatalf("the package has no %s", kind)
	return ""
}

// image is what the tests read of an image tarball: its platform, user and some files.
type image struct {
	arch, user string
	files      map[string]string // path: content
}

// readImage reads an image tarball and the regular files named; a non-empty tag must be the
// one it was written with.
func readImage(t testing.TB, path, tag string, files ...string) image {
	t.Helper()
	var ref *name.Tag
	if tag != "" {
		r, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		ref = &r
	}
	img, err := tarball.ImageFromPath(path, ref)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	got := image{arch: cfg.Architecture, user: cfg.Config.User, files: map[string]string{}}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg && slices.Contains(files, strings.TrimPrefix(h.Name, "/")) {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got.files[strings.TrimPrefix(h.Name, "/")] = string(b)
		}
	}
	return got
}

func mustReference(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// pushPackage pushes the xpkg at path to host as repo (with its tag), and returns its
// reference.
func pushPackage(t testing.TB, host, repo, path string) name.Reference {
	t.Helper()
	ref := mustReference(t, host+"/"+repo)
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// xpkgBuild builds the package whose root is dir with the Crossplane CLI, into the test's
// temporary directory.
func xpkgBuild(t testing.TB, dir string) string {
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
// example/legacy's moved to a group of their own (legacyAPI), with the function's package
// metadata tagged v0.1.0 and provider-kubernetes' tagged with its version (each its
// crossplane.yaml and CRDs as `crossplane xpkg build` packs them, without a runtime: no
// dependency runs here, and the provider's CRDs are left out, the suite installs them
// itself). Crossplane accepts the Configuration's own Crossplane constraint and resolves
// both dependencies' version constraints to those tags in its Lock. On Crossplane 1.20
// (E2E_CROSSPLANE=v1) this is the proof that the claim flavour installs there.
func TestLegacyConfigurationDependenciesResolve(t *testing.T) {
	x := useCrossplane(t)
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")

	pkDir, err := moduleDir(cluster.repoRoot, "tools/provider-kubernetes", "github.com/crossplane-contrib/provider-kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	const pkVersion = "v1.0.0"
	provider := t.TempDir()
	copyFile(t, filepath.Join(pkDir, "package", "crossplane.yaml"), filepath.Join(provider, "crossplane.yaml"), nil)
	pushPackage(t, host, "crossplane-contrib/provider-kubernetes:"+pkVersion, xpkgBuild(t, provider))
	pushPackage(t, host, "hfops/function-hf-download:v0.1.0", xpkgBuild(t, filepath.Join(cluster.repoRoot, "package")))

	config := t.TempDir()
	toLoopback := func(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), "xpkg.crossplane.io/", host+"/")) }
	copyFile(t, filepath.Join(cluster.repoRoot, "configuration", "legacy", "crossplane.yaml"), filepath.Join(config, "crossplane.yaml"), toLoopback)
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
	ref := pushPackage(t, host, "hfops/configuration-hf-download-claims:v0.0.0-e2e", xpkgBuild(t, config))

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
func copyFile(t testing.TB, src, dst string, edit func([]byte) []byte) {
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
func actAsExternalRuntime(t testing.TB, x *crossplane, revision, service string) {
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
