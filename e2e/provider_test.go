package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

const (
	providerName        = "provider-kubernetes"
	providerMetricsPort = "8080"
	providerWebhookPort = "9443"
	objectsGroup        = "kubernetes.m.crossplane.io"
	clusterObjectsGroup = "kubernetes.crossplane.io"
	objectsComposite    = "modeldownloads-objects.hfops.kamal.dev"

	// legacyGroup is where the claim flavour of the API lives in these tests: its claim
	// is a ModelDownload too, whose CRD would clash with the v2 XRD's in hfops.kamal.dev.
	legacyGroup = "legacy.e2e.hfops.kamal.dev"
)

var (
	objectResource        = schema.GroupVersionResource{Group: objectsGroup, Version: "v1alpha1", Resource: "objects"}
	clusterObjectResource = schema.GroupVersionResource{Group: clusterObjectsGroup, Version: "v1alpha2", Resource: "objects"}
	legacyXRResource      = schema.GroupVersionResource{Group: legacyGroup, Version: "v1alpha1", Resource: "xmodeldownloads"}

	providerOnce sync.Once
	errProvider  error
)

// useProviderKubernetes makes sure Crossplane runs with the function and provider-kubernetes,
// starting the provider the first time a test needs it.
func useProviderKubernetes(t testing.TB) {
	t.Helper()
	x := useFunction(t)
	providerOnce.Do(func() { errProvider = startProviderKubernetes(cluster, x) })
	if errProvider != nil {
		t.Fatalf("start provider-kubernetes: %v", errProvider)
	}
}

// startProviderKubernetes installs provider-kubernetes as its package would (its CRDs, and
// the rules Crossplane's RBAC manager gives Crossplane for a provider's managed resources),
// gives it an identity with cluster-admin (how provider-kubernetes is commonly set up), a
// ClusterProviderConfig with that identity's kubeconfig, and the Composition that composes
// the example's API through namespaced Objects; then runs the provider.
func startProviderKubernetes(cp *controlPlane, x *crossplane) error {
	ctx := context.Background()
	dir, err := moduleDir(cp.repoRoot, "tools/provider-kubernetes", "github.com/crossplane-contrib/provider-kubernetes")
	if err != nil {
		return err
	}
	crds, err := filepath.Glob(filepath.Join(dir, "package", "crds", "*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("no CRDs in %s (%w)", dir, err)
	}
	for _, f := range crds {
		objs, err := readObjects(f)
		if err != nil {
			return err
		}
		for _, crd := range objs {
			// Crossplane points a package's conversion webhook at the provider's Service on
			// install; without kube-proxy nothing could reach it. Only the storage version
			// of Object is used here, so no conversion is needed.
			unstructured.RemoveNestedField(crd.Object, "spec", "conversion")
			if err := x.apply.apply(ctx, crd); err != nil {
				return err
			}
		}
	}
	if err := waitEstablished(ctx, "objects."+objectsGroup, "clusterproviderconfigs."+objectsGroup); err != nil {
		return err
	}

	// Crossplane composes Objects with what the RBAC manager would grant it for the
	// provider's managed resources.
	_, err = cp.kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "crossplane:provider:" + providerName + ":aggregate-to-crossplane",
			Labels: map[string]string{"rbac.crossplane.io/aggregate-to-crossplane": "true"},
		},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{objectsGroup, clusterObjectsGroup}, Resources: []string{"*"}, Verbs: []string{rbacv1.VerbAll}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}

	_, err = cp.kube.CoreV1().ServiceAccounts(crossplaneNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: providerName}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	_, err = cp.kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: providerName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: crossplaneNamespace, Name: providerName}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	tr, err := cp.kube.CoreV1().ServiceAccounts(crossplaneNamespace).CreateToken(ctx, providerName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](6 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := cp.writeKubeconfig(providerName, tr.Status.Token); err != nil {
		return err
	}
	kubeconfig, err := os.ReadFile(cp.kubeconfigPath(providerName))
	if err != nil {
		return err
	}
	_, err = cp.kube.CoreV1().Secrets(crossplaneNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: providerName + "-kubeconfig"},
		Data:       map[string][]byte{"kubeconfig": kubeconfig},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	// One config for each API: the namespaced Objects' ClusterProviderConfig and the
	// cluster-scoped Objects' ProviderConfig, both named default.
	for _, kind := range []struct{ apiVersion, kind string }{
		{objectsGroup + "/v1alpha1", "ClusterProviderConfig"},
		{clusterObjectsGroup + "/v1alpha1", "ProviderConfig"},
	} {
		pc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": kind.apiVersion,
			"kind":       kind.kind,
			"metadata":   map[string]any{"name": "default"},
			"spec": map[string]any{"credentials": map[string]any{
				"source":    "Secret",
				"secretRef": map[string]any{"namespace": crossplaneNamespace, "name": providerName + "-kubeconfig", "key": "kubeconfig"},
			}},
		}}
		if err := x.apply.apply(ctx, pc); err != nil {
			return err
		}
	}
	// The namespaced Objects' Composition is for the v2 API, which Crossplane 1.x lacks.
	if !core.v1 {
		if err := x.apply.applyFile(ctx, filepath.Join("testdata", "composition-objects.yaml")); err != nil {
			return err
		}
	}
	for _, g := range []string{objectsGroup, clusterObjectsGroup} {
		if err := waitRule(ctx, cp, "crossplane", g, "*", 2*time.Minute); err != nil {
			return err
		}
	}
	if err := applyLegacyAPI(ctx, x); err != nil {
		return err
	}

	// The provider serves a conversion webhook, so it wants a serving certificate even
	// though nothing calls it here.
	ca, err := newCertAuthority("provider-kubernetes-webhook")
	if err != nil {
		return err
	}
	crt, key, err := ca.issue(providerName, []string{providerName}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	certs := filepath.Join(cp.dir, providerName+"-tls")
	if err := writeSecretFiles(certs, map[string][]byte{"tls.crt": crt, "tls.key": key}, "tls.crt", "tls.key"); err != nil {
		return err
	}
	// provider-kubernetes has no flags for its ports: metrics on :8080 and webhooks on
	// :9443, on every interface. Say so plainly if something else holds them.
	for _, port := range []string{providerMetricsPort, providerWebhookPort} {
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return fmt.Errorf("provider-kubernetes needs port %s, which it cannot be told to change: %w", port, err)
		}
		_ = l.Close()
	}
	p, err := startProcess(cp.logDir, providerName,
		envList("KUBECONFIG", cp.kubeconfigPath(providerName), "TLS_SERVER_CERTS_DIR", certs),
		cp.bin(providerName),
		"--debug",
		// Jobs change status without the Object changing: watch them, and poll often in
		// case a watch event is missed.
		"--enable-watches",
		"--poll=5s",
	)
	if err != nil {
		return err
	}
	cp.track(p)
	// The webhook server listens once the manager has started its controllers.
	return p.waitReady(2*time.Minute, listening("127.0.0.1:"+providerWebhookPort))
}

// waitEstablished waits until the named CRDs are served.
func waitEstablished(ctx context.Context, names ...string) error {
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for {
			crd, err := cluster.dynamic.Resource(crdResource).Get(ctx, n, metav1.GetOptions{})
			if err == nil && conditionStatus(crd, "Established") == "True" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established after a minute (last error: %w)", n, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}

// TestObjectModeWithProviderKubernetes runs Object mode for real: the example XR, composed
// through namespaced provider-kubernetes Objects, has the real provider create one Job per
// model; the Jobs' status comes back through status.atProvider.manifest into the XR; once a
// model is recorded Completed its Object leaves and the Job it orphaned stays for its TTL.
func TestObjectModeWithProviderKubernetes(t *testing.T) {
	t.Parallel()
	useProviderKubernetes(t)
	md := newModelDownload(t, "objects", func(spec map[string]any) {
		spec["crossplane"] = map[string]any{"compositionRef": map[string]any{"name": objectsComposite}}
	})
	ctx := context.Background()
	objects := func() ([]unstructured.Unstructured, error) {
		l, err := cluster.dynamic.Resource(objectResource).Namespace(md.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return jobObjects(l.Items), nil
	}

	var objs []unstructured.Unstructured
	waitFor(t, 2*time.Minute, "one Object per model", func() (bool, string) {
		var err error
		objs, err = objects()
		return err == nil && len(objs) == 2, fmt.Sprintf("%d Objects (%v)", len(objs), err)
	})
	jobs := md.waitJobs(t, 2, "provider-kubernetes to create the Jobs", nil)
	for _, o := range objs {
		if job := jobs[o.GetAnnotations()["hfops.kamal.dev/model"]]; job.Name != o.GetName() {
			t.Errorf("Object %s: want it beside the Job of the same name, got %q", o.GetName(), job.Name)
		}
	}
	finishThroughObjects(t, md, jobs, objects)
	md.waitXR(t, "the XR Ready", func(xr *unstructured.Unstructured) bool { return conditionStatus(xr, "Ready") == "True" })
}

// jobObjects are the Objects that carry Jobs (not the script's ConfigMap).
func jobObjects(objs []unstructured.Unstructured) []unstructured.Unstructured {
	var out []unstructured.Unstructured
	for _, o := range objs {
		if k, _, _ := unstructured.NestedString(o.Object, "spec", "forProvider", "manifest", "kind"); k == "Job" {
			out = append(out, o)
		}
	}
	return out
}

// finishThroughObjects drives every Job to success and checks what Object mode promises
// then: the ModelDownload (XR or claim) shows each model completed with its commit, read
// back through the Objects; the Objects go, orphaning their Jobs (provider-kubernetes would
// otherwise re-create a Job its TTL deleted); the Jobs stay for their TTL.
func finishThroughObjects(t testing.TB, md *modelDownload, jobs map[string]batchv1.Job, objects func() ([]unstructured.Unstructured, error)) {
	t.Helper()
	for _, job := range jobs {
		finishJobPod(t, md.ns, job.Name, podOutcome{message: successMessage})
	}
	got := md.waitXR(t, "every model completed, read back through the Objects", func(u *unstructured.Unstructured) bool {
		return len(statusList(u, "completed")) == len(jobs) && hasCondition(u, "ModelsDownloaded", "True", "Downloaded")
	})
	for model := range jobs {
		if m := statusModel(got, model); m["commit"] != summaryCommit {
			t.Errorf("status of %s = %v, want the commit of its pod's termination message", model, m)
		}
	}
	waitFor(t, 2*time.Minute, "the Objects of the completed Jobs to go", func() (bool, string) {
		objs, err := objects()
		return err == nil && len(objs) == 0, fmt.Sprintf("%d Objects (%v)", len(objs), err)
	})
	if left, err := md.jobs(); err != nil || len(left) != len(jobs) {
		t.Errorf("the Jobs the Objects orphaned: got %d (%v), want all %d still there for their TTL", len(left), err, len(jobs))
	}
}

// applyLegacyAPI applies example/legacy's XRD and Composition, moved to legacyGroup.
func applyLegacyAPI(ctx context.Context, x *crossplane) error {
	xrd, comp, err := legacyAPI(legacyGroup)
	if err != nil {
		return err
	}
	if err := x.establishXRD(ctx, xrd); err != nil {
		return err
	}
	return x.apply.apply(ctx, comp)
}

// legacyAPI is example/legacy's XRD and Composition moved to group, so that they clash
// with no other API of the suite (a claim is a ModelDownload, like the v2 XR).
func legacyAPI(group string) (xrd, comp *unstructured.Unstructured, err error) {
	xrds, err := readObjects(exampleFile("legacy/definition.yaml"))
	if err != nil {
		return nil, nil, err
	}
	comps, err := readObjects(exampleFile("legacy/composition.yaml"))
	if err != nil {
		return nil, nil, err
	}
	if len(xrds) != 1 || len(comps) != 1 {
		return nil, nil, fmt.Errorf("example/legacy: want one XRD and one Composition, got %d and %d", len(xrds), len(comps))
	}
	xrd, comp = xrds[0], comps[0]
	plural, _, _ := unstructured.NestedString(xrd.Object, "spec", "names", "plural")
	name := plural + "." + group
	xrd.SetName(name)
	comp.SetName(name)
	for _, f := range []struct {
		obj   *unstructured.Unstructured
		value string
		path  []string
	}{
		{xrd, group, []string{"spec", "group"}},
		{xrd, name, []string{"spec", "defaultCompositionRef", "name"}},
		{comp, group + "/v1alpha1", []string{"spec", "compositeTypeRef", "apiVersion"}},
	} {
		if err := unstructured.SetNestedField(f.obj.Object, f.value, f.path...); err != nil {
			return nil, nil, err
		}
	}
	return xrd, comp, nil
}

// TestClaimWithProviderKubernetes runs the claim flavour for real: example/legacy's claim
// of a cluster-scoped XModelDownload, composed through cluster-scoped provider-kubernetes
// Objects aimed at the claim's namespace. The Jobs are named after the claim, their status
// reaches the claim, and once complete the Objects leave the Jobs behind. Then a model taken
// out of the claim is reclaimed, and a check of the other (settings.resyncInterval) finds
// its revision moved, each through its Object, each said in the claim's status.
func TestClaimWithProviderKubernetes(t *testing.T) {
	t.Parallel()
	useProviderKubernetes(t)
	claims, err := readObjects(exampleFile("legacy/claim.yaml"))
	if err != nil || len(claims) != 1 {
		t.Fatalf("example/legacy/claim.yaml: want one claim (%v)", err)
	}
	claim := claims[0]
	claim.SetAPIVersion(legacyGroup + "/v1alpha1")
	ns := tokenNamespace(t, "claim")
	pvc, _, _ := unstructured.NestedString(claim.Object, "spec", "storagePVC")
	createPVC(t, ns, pvc)
	if core.v1 {
		// Crossplane 1.x gets no namespaced object by name: a 1.x user labels the token
		// Secret and the PVC so that it can list them for the function (internal/read/dialect.go).
		labelReadable(t, ns, "secrets", "hf-token")
		labelReadable(t, ns, "persistentvolumeclaims", pvc)
	}
	md := applyIn(t, ns, claim, "claim", nil)
	ctx := context.Background()
	objects := func() ([]unstructured.Unstructured, error) {
		l, err := cluster.dynamic.Resource(clusterObjectResource).List(ctx, metav1.ListOptions{LabelSelector: "parent=" + md.name})
		if err != nil {
			return nil, err
		}
		var mine []unstructured.Unstructured
		for _, o := range jobObjects(l.Items) {
			if ns, _, _ := unstructured.NestedString(o.Object, "spec", "forProvider", "manifest", "metadata", "namespace"); ns == md.ns {
				mine = append(mine, o)
			}
		}
		return mine, nil
	}

	var objs []unstructured.Unstructured
	waitFor(t, 2*time.Minute, "one cluster-scoped Object per model, aimed at the claim's namespace", func() (bool, string) {
		objs, err = objects()
		return err == nil && len(objs) == 2, fmt.Sprintf("%d Objects (%v)", len(objs), err)
	})
	// Crossplane labels the XR and what it composes with the claim; the function names
	// and places the Jobs by these labels.
	claimLabels := map[string]string{"crossplane.io/claim-name": md.name, "crossplane.io/claim-namespace": md.ns}
	bound, err := md.get()
	if err != nil {
		t.Fatal(err)
	}
	xrName, _, _ := unstructured.NestedString(bound.Object, "spec", "resourceRef", "name")
	xr, err := cluster.dynamic.Resource(legacyXRResource).Get(ctx, xrName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the claim's XR %q: %v", xrName, err)
	}
	for _, o := range append(objs, *xr) {
		for k, v := range claimLabels {
			if got := o.GetLabels()[k]; got != v {
				t.Errorf("%s %s: label %s = %q, want %q", o.GetKind(), o.GetName(), k, got, v)
			}
		}
	}
	jobs := md.waitJobs(t, 2, "provider-kubernetes to create the Jobs in the claim's namespace", nil)
	for _, job := range jobs {
		if !strings.HasPrefix(job.Name, "hf-dl-"+md.name+"-") {
			t.Errorf("Job %s: want it named after the claim %s", job.Name, md.name)
		}
	}
	finishThroughObjects(t, md, jobs, objects)
	// The claim exports the series a namespaced ModelDownload does: its status is its
	// composite's, and the shipped configuration takes the claim's group.
	url := useKubeStateMetrics(t, legacyGroup)
	var want []expectation
	for model := range jobs {
		want = append(want,
			expectation{"hfops_modeldownload_model_phase", labelSet("model", model, "phase", "Completed"), 1},
			expectation{"hfops_modeldownload_model_bytes", labelSet("model", model), 2048})
	}
	waitMetrics(t, url, md, "the claim's models completed in kube-state-metrics' series", append(want,
		expectation{"hfops_modeldownload_condition", labelSet("type", "ModelsDownloaded", "status", "True"), 1}))

	// A model taken out of the claim under settings.reclaim Delete: the reclaim Job, made by
	// provider-kubernetes from its Object in the claim's namespace, removes its directory,
	// and the claim's status says what it freed.
	spec, _, _ := unstructured.NestedMap(md.obj.Object, "spec")
	gone, _ := models(spec)[1].(map[string]any)["name"].(string)
	md.update(t, func(spec map[string]any) {
		settingsOf(spec)["reclaim"] = "Delete"
		spec["models"] = models(spec)[:1]
	})
	reclaim := waitClaimReclaim(t, md, gone, "its Job", func(r map[string]any) bool { return r["jobName"] != nil })
	finishJobPod(t, md.ns, reclaim["jobName"].(string), podOutcome{message: `{"bytesFreed":8192,"files":3}`})
	waitClaimReclaim(t, md, gone, "Completed with what it freed", func(r map[string]any) bool {
		return r["phase"] == "Completed" && r["bytesFreed"] == int64(8192) && r["files"] == int64(3)
	})

	// Under settings.resyncInterval, a check of the kept model, made by provider-kubernetes
	// from its Object, finds the revision moved; the claim's status says so. The hour is not
	// waited for: an older checkedAt is written into the XR's status, which the function reads.
	kept, _ := models(spec)[0].(map[string]any)["name"].(string)
	md.update(t, func(spec map[string]any) { settingsOf(spec)["resyncInterval"] = "1h" })
	long := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	var check string
	// Minutes, not seconds: a Crossplane whose circuit breaker for the XR is open (the
	// claim's many events) reconciles it only at its poll interval.
	waitFor(t, 4*time.Minute, "a check of "+kept, func() (bool, string) {
		x, err := cluster.dynamic.Resource(legacyXRResource).Get(ctx, xrName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		m := statusModel(x, kept)
		if m["resync"] == nil && m["checkedAt"] != nil && m["checkedAt"] != long {
			if err := md.checkedAt(x, kept, long); err != nil {
				return false, "writing an older checkedAt: " + err.Error()
			}
		}
		check, _ = unstructuredPath(m, "resync.jobName").(string)
		return check != "", fmt.Sprintf("status of %s: %v", kept, m)
	})
	moved := strings.Repeat("d", 40)
	finishJobPod(t, md.ns, check, podOutcome{message: `{"commit":"` + moved + `","files":2,"bytes":4096,"seconds":1,"verified":true}`})
	waitFor(t, 4*time.Minute, "the claim's status to say "+kept+" moved", func() (bool, string) {
		c, err := md.get()
		if err != nil {
			return false, err.Error()
		}
		m := statusModel(c, kept)
		return m["phase"] == "Completed" && m["commit"] == moved && unstructuredPath(m, "resync.phase") == "Completed" &&
			unstructuredPath(m, "resync.movedFrom") != nil, fmt.Sprintf("status of %s: %v", kept, m)
	})

	got, err := md.get()
	if err != nil {
		t.Fatal(err)
	}
	status, err := yaml.Marshal(got.Object["status"])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the claim's status on Crossplane %s:\n%s", core.name, status)
}

// waitClaimReclaim waits until the status.reclaims entry of model on the claim (or XR) md
// meets cond, and returns it.
func waitClaimReclaim(t testing.TB, md *modelDownload, model, what string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	var r map[string]any
	waitFor(t, 2*time.Minute, "the reclaim of "+model+": "+what, func() (bool, string) {
		c, err := md.get()
		if err != nil {
			return false, err.Error()
		}
		r = statusReclaim(c, model)
		return r != nil && cond(r), fmt.Sprintf("status.reclaims entry %v", r)
	})
	return r
}

// labelReadable labels a namespaced object of the core API group so that Crossplane 1.x
// can list it for the function (hfops.kamal.dev/readable, internal/read/dialect.go).
func labelReadable(t testing.TB, ns, resource, name string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"hfops.kamal.dev/readable":"true"}}}`)
	_, err := cluster.dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: resource}).Namespace(ns).
		Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("label %s %s/%s readable: %v", resource, ns, name, err)
	}
}
