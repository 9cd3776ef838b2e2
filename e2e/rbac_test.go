package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// access is one question for the apiserver's authorizer.
type access struct {
	group, resource, subresource, verb string
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	return a.verb + " " + r
}

func verbs(group, resource string, vs ...string) []access {
	out := make([]access, len(vs))
	for i, v := range vs {
		out[i] = access{group: group, resource: resource, verb: v}
	}
	return out
}

var (
	readVerbs   = []string{"get", "list", "watch"}
	manageVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}

	// What Crossplane does for the function, in any namespace: compose Jobs and PVCs
	// (server-side apply, the label cleanup of composed resources that go, which is an
	// update, deletion, realtime watches) and read what the function requires: the token
	// Secret (the chart's role already grants Secrets), the download pods and Namespaces;
	// and the Role and RoleBinding of live progress.
	functionNeeds = concat(
		verbs("batch", "jobs", manageVerbs...),
		verbs("", "persistentvolumeclaims", manageVerbs...),
		verbs("", "pods", readVerbs...),
		verbs("", "namespaces", readVerbs...),
		verbs("rbac.authorization.k8s.io", "roles", manageVerbs...),
		verbs("rbac.authorization.k8s.io", "rolebindings", manageVerbs...),
	)

	// The script's and the progress ConfigMaps and the pods' ServiceAccount, composed like
	// the Jobs: Crossplane's own role (the chart's) already grants them everywhere, so the
	// shipped role needs no rule for them.
	chartGrants = concat(verbs("", "configmaps", manageVerbs...), verbs("", "serviceaccounts", manageVerbs...))

	// What the shipped role must not give: nothing that runs code in a pod, reads its
	// logs, changes pods, namespaces or cluster storage, or edits Job status.
	functionMustNotGet = []access{
		{resource: "pods", verb: "create"},
		{resource: "pods", verb: "update"},
		{resource: "pods", verb: "patch"},
		{resource: "pods", verb: "delete"},
		{resource: "pods", subresource: "exec", verb: "create"},
		{resource: "pods", subresource: "log", verb: "get"},
		{resource: "namespaces", verb: "create"},
		{resource: "namespaces", verb: "update"},
		{resource: "namespaces", verb: "delete"},
		{resource: "persistentvolumes", verb: "create"},
		{resource: "persistentvolumes", verb: "delete"},
		{group: "batch", resource: "jobs", subresource: "status", verb: "update"},
		{group: "batch", resource: "cronjobs", verb: "create"},
		{group: "rbac.authorization.k8s.io", resource: "clusterroles", verb: "create"},
		{group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", verb: "create"},
		{resource: "serviceaccounts", subresource: "token", verb: "create"},
	}
)

func concat(lists ...[]access) []access {
	var out []access
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// allowed asks the apiserver whether a service account may do a in a team's namespace.
func allowed(ctx context.Context, sa string, a access) (bool, error) {
	const saNS = "crossplane-system"
	// Any namespace a team might use: the rules are cluster-wide.
	const ns = "any-team-namespace"
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   fmt.Sprintf("system:serviceaccount:%s:%s", saNS, sa),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Group: a.group, Resource: a.resource, Subresource: a.subresource, Verb: a.verb,
		},
	}}
	if a.resource == "namespaces" || a.resource == "persistentvolumes" {
		sar.Spec.ResourceAttributes.Namespace = ""
	}
	got, err := cluster.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return got.Status.Allowed, nil
}

// TestShippedRBACIsEnoughAndNotMore asks the real RBAC authorizer, for Crossplane's own
// service account with the chart's ClusterRoles and example/rbac.yaml aggregated in, whether
// it may do what composing ModelDownloads takes (yes, in any namespace) and what no download
// needs (no). Then it shows the shipped role is needed: the same service account with only
// the chart's rules may do none of it. (The ModelDownload tests prove the role is enough in
// practice: without `update` on Jobs, Crossplane cannot let go of a replaced Job and
// TestModelDownloadLifecycle and TestModelDownloadTokenRotation time out.)
func TestShippedRBACIsEnoughAndNotMore(t *testing.T) {
	useFunction(t)
	ctx := context.Background()
	// expect checks that sa may (or may not) do each of list, and says why it matters.
	expect := func(sa string, list []access, may bool, why string) {
		t.Helper()
		for _, a := range list {
			ok, err := allowed(ctx, sa, a)
			if err != nil {
				t.Fatal(err)
			}
			if ok != may {
				t.Errorf("%s may %s: %v, want %v: %s", sa, a, ok, may, why)
			}
		}
	}
	// The aggregation controller copies the shipped rules into Crossplane's ClusterRole in one
	// update, and the authorizer sees it once its informers do: a busy machine may take a
	// while. Its first rule allowed says both happened; then every answer is the rules'.
	waitFor(t, 2*time.Minute, "the shipped ClusterRole to be aggregated into Crossplane's", func() (bool, string) {
		ok, err := allowed(ctx, "crossplane", functionNeeds[0])
		return ok, fmt.Sprintf("crossplane may %s: %v (err %v)", functionNeeds[0], ok, err)
	})
	expect("crossplane", functionNeeds, true, "the shipped ClusterRole must grant it")
	expect("crossplane", chartGrants, true, "the script's ConfigMap could not be composed")
	expect("crossplane", functionMustNotGet, false, "no download needs it")

	// The chart's rules alone, bound to a service account of their own.
	chart, err := cluster.kube.RbacV1().ClusterRoles().Get(ctx, "crossplane:system:aggregate-to-crossplane", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const chartOnly = "e2e-chart-rules-only"
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: chartOnly}, Rules: chart.Rules}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: chartOnly},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: chartOnly},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "crossplane-system", Name: chartOnly}},
	}
	if _, err := cluster.kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.kube.RbacV1().ClusterRoles().Delete(context.Background(), chartOnly, metav1.DeleteOptions{})
	})
	if _, err := cluster.kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), chartOnly, metav1.DeleteOptions{})
	})
	// The authorizer sees the binding once its informers do; the chart's own Secret rule
	// shows when, and that a "no" below is the rules' answer, not a missing binding's.
	waitFor(t, time.Minute, "the chart's rules to apply to "+chartOnly, func() (bool, string) {
		ok, err := allowed(ctx, chartOnly, access{resource: "secrets", verb: "get"})
		return ok, fmt.Sprintf("allowed=%v err=%v", ok, err)
	})
	expect(chartOnly, functionNeeds, false, "the chart's rules alone already allow it: the shipped ClusterRole should not repeat it")
	expect(chartOnly, chartGrants, true, "the chart's rules alone do not allow it: the shipped ClusterRole must grant it")
}
