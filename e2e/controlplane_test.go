package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// controlPlane is a real Kubernetes control plane on loopback: etcd, kube-apiserver and
// kube-controller-manager (job, ttl-after-finished, garbage collector and the controllers
// they depend on), and a real node (node_test.go) started by the first test that needs it.
// Tests that need a state a node cannot produce on demand play the kubelet by writing pod
// status to pods that stay off the node.
type controlPlane struct {
	repoRoot string
	binDir   string
	dir      string // everything the run writes: data, certs, kubeconfigs
	logDir   string

	mu    sync.Mutex
	procs []*process // in start order; stopped in reverse
	// first are run by stop before any process stops, last registered first: the real
	// node's teardown needs the apiserver to stop its pods.
	first []func()

	host string // https://127.0.0.1:<port>
	// podSubnet is the real node's pod network, chosen before the apiserver starts so that
	// its certificate names the gateway, through which the pods reach it.
	podSubnet *net.IPNet
	caPEM     []byte
	admin     *rest.Config
	kube      kubernetes.Interface
	dynamic   dynamic.Interface
}

// The static tokens of the identities that are not service accounts. The controller
// manager authenticates as system:kube-controller-manager, which the bootstrap RBAC policy
// binds to exactly what it needs to mint per-controller service account tokens
// (--use-service-account-credentials), as in a kubeadm cluster; the scheduler as
// system:kube-scheduler, also bound by the bootstrap policy; the kubelet as its node, in
// system:nodes, which the Node authorizer limits to its own node and pods.
const (
	adminUser     = "e2e-admin"
	kcmUser       = "system:kube-controller-manager"
	schedulerUser = "system:kube-scheduler"
	kubeletUser   = "system:node:" + nodeName
)

// startControlPlane starts etcd, kube-apiserver and kube-controller-manager in dir and
// waits until each is ready. On error, whatever was started is still recorded in cp.procs
// for stop.
func startControlPlane(cp *controlPlane) error {
	for _, d := range []string{cp.logDir, filepath.Join(cp.dir, "pki")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	subnet, err := freeSubnet()
	if err != nil {
		return err
	}
	cp.podSubnet = subnet
	etcdURL, err := cp.startEtcd()
	if err != nil {
		return err
	}
	if err := cp.startAPIServer(etcdURL); err != nil {
		return err
	}
	return cp.startControllerManager()
}

func (cp *controlPlane) track(p *process) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.procs = append(cp.procs, p)
}

// stop stops every process, last started first, so no controller outlives the apiserver
// it talks to and logs a storm of connection errors.
func (cp *controlPlane) stop() {
	cp.mu.Lock()
	procs, first := cp.procs, cp.first
	cp.procs, cp.first = nil, nil
	cp.mu.Unlock()
	for i := len(first) - 1; i >= 0; i-- {
		first[i]()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
}

// beforeStop registers f to run when the control plane stops, before its processes do.
func (cp *controlPlane) beforeStop(f func()) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.first = append(cp.first, f)
}

// logTails returns the end of every component's log, for a failing test's output.
func (cp *controlPlane) logTails(lines int) string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var b strings.Builder
	seen := map[string]bool{} // a component run more than once (crossplane-init) shares a log
	for _, p := range cp.procs {
		if seen[p.logPath] {
			continue
		}
		seen[p.logPath] = true
		fmt.Fprintf(&b, "\n===== %s (last %d lines of %s) =====\n%s\n", p.name, lines, p.logPath, p.tail(lines))
	}
	return b.String()
}

// logPath is where the named component writes its output.
func (cp *controlPlane) logPath(name string) string { return filepath.Join(cp.logDir, name+".log") }

func (cp *controlPlane) bin(name string) string { return filepath.Join(cp.binDir, name) }

// etcdBinary finds Debian's etcd: on PATH, or in /usr/bin when PATH is reduced.
func etcdBinary() (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", fmt.Errorf("etcd not found on PATH nor in /usr/bin: hack/tools.sh installs it")
}

func (cp *controlPlane) startEtcd() (string, error) {
	bin, err := etcdBinary()
	if err != nil {
		return "", err
	}
	var clientURL string
	err = startWithRetry(2, time.Minute, func(ports []int) (*process, func() error, error) {
		clientURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		dataDir := filepath.Join(cp.dir, "etcd")
		if err := os.RemoveAll(dataDir); err != nil { // left by an attempt that lost a port race
			return nil, nil, err
		}
		p, err := startProcess(cp.logDir, "etcd", nil, bin,
			"--name=e2e",
			"--data-dir="+dataDir,
			"--listen-client-urls="+clientURL,
			"--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=e2e="+peerURL,
			"--logger=zap",
			"--log-level=warn",
		)
		if err != nil {
			return nil, nil, err
		}
		cp.track(p)
		return p, func() error { return httpOK(http.DefaultClient, clientURL+"/health", "") }, nil
	})
	if err != nil {
		return "", err
	}
	return clientURL, nil
}

func (cp *controlPlane) startAPIServer(etcdURL string) error {
	pki := filepath.Join(cp.dir, "pki")
	ca, err := newCertAuthority("e2e-kubernetes-ca")
	if err != nil {
		return err
	}
	cp.caPEM = ca.certPEM
	servingCert, servingKey, err := ca.issue("kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		[]net.IP{net.IPv4(127, 0, 0, 1), podGateway(cp.podSubnet)})
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": ca.certPEM, "apiserver.crt": servingCert, "apiserver.key": servingKey}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(pki, name), data, 0o600); err != nil {
			return err
		}
	}
	saKey, saPub := filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")
	if err := writeServiceAccountKey(saKey, saPub); err != nil {
		return err
	}
	adminToken, kcmToken, schedulerToken, kubeletToken := randomToken(), randomToken(), randomToken(), randomToken()
	tokens := fmt.Sprintf("%s,%s,%s,system:masters\n%s,%s,%s\n%s,%s,%s\n%s,%s,%s,system:nodes\n",
		adminToken, adminUser, adminUser, kcmToken, kcmUser, kcmUser,
		schedulerToken, schedulerUser, schedulerUser, kubeletToken, kubeletUser, kubeletUser)
	tokenFile := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o600); err != nil {
		return err
	}

	var host string
	err = startWithRetry(1, 2*time.Minute, func(ports []int) (*process, func() error, error) {
		host = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
		p, err := startProcess(cp.logDir, "kube-apiserver", nil, cp.bin("kube-apiserver"),
			"--etcd-servers="+etcdURL,
			"--bind-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(ports[0]),
			"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"),
			"--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
			"--token-auth-file="+tokenFile,
			// Node, as in a real cluster: the kubelet may read only the Secrets and
			// ConfigMaps its pods name (the token's secretKeyRef, the script), and
			// NodeRestriction keeps it to its own node and pods.
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file="+saPub,
			"--service-account-signing-key-file="+saKey,
			"--service-cluster-ip-range=10.96.0.0/16",
			// The apiserver would publish its loopback address as the endpoint of the
			// "kubernetes" Service, which Endpoints validation rejects; nothing here
			// reaches the apiserver through that Service.
			"--endpoint-reconciler-type=none",
			"--profiling=false",
		)
		if err != nil {
			return nil, nil, err
		}
		cp.track(p)
		client, err := httpsClient(ca.certPEM)
		if err != nil {
			return nil, nil, err
		}
		return p, func() error { return httpOK(client, host+"/readyz", adminToken) }, nil
	})
	if err != nil {
		return err
	}
	cp.host = host
	cp.admin = cp.restConfig(adminToken)
	if cp.kube, err = kubernetes.NewForConfig(cp.admin); err != nil {
		return err
	}
	if cp.dynamic, err = dynamic.NewForConfig(cp.admin); err != nil {
		return err
	}
	for name, token := range map[string]string{"kube-controller-manager": kcmToken, "kube-scheduler": schedulerToken, "kubelet": kubeletToken} {
		if err := cp.writeKubeconfig(name, token); err != nil {
			return err
		}
	}
	return nil
}

func (cp *controlPlane) startControllerManager() error {
	p, err := startProcess(cp.logDir, "kube-controller-manager", nil, cp.bin("kube-controller-manager"),
		"--kubeconfig="+cp.kubeconfigPath("kube-controller-manager"),
		// Only what the tests exercise, plus what those controllers need to work: the
		// serviceaccount controller creates each namespace's "default" ServiceAccount,
		// without which the ServiceAccount admission plugin rejects every pod; the
		// namespace controller empties deleted namespaces; clusterrole-aggregation fills
		// Crossplane's aggregated ClusterRole from the roles labelled for it; the
		// persistentvolumeclaim-protection controller lets a deleted PVC go once no pod
		// uses it (admission gives every PVC its finalizer), the persistentvolume ones do
		// the same for volumes and bind the real node's static volumes to their claims;
		// the node lifecycle controller takes the not-ready taint off the real node once
		// its kubelet says it is Ready; the root CA publisher puts kube-root-ca.crt, which the
		// download pods verify the apiserver with, in every namespace.
		"--controllers=job-controller,ttl-after-finished-controller,garbage-collector-controller,serviceaccount-controller,namespace-controller,clusterrole-aggregation-controller,persistentvolumeclaim-protection-controller,persistentvolume-binder-controller,persistentvolume-protection-controller,node-lifecycle-controller,root-ca-certificate-publisher-controller",
		// Each controller runs as its own ServiceAccount with a token from the TokenRequest
		// API, so the bootstrap RBAC policy is exercised as in a real cluster.
		"--use-service-account-credentials=true",
		"--root-ca-file="+filepath.Join(cp.dir, "pki", "ca.crt"),
		// No health endpoint is needed: readiness is judged by the controllers' effects.
		"--secure-port=0",
		"--leader-elect=false",
		// The default client rate limit (20 qps) slows the garbage collector's discovery
		// and the Job controller when several tests run at once.
		"--kube-api-qps=200",
		"--kube-api-burst=400",
	)
	if err != nil {
		return err
	}
	cp.track(p)
	// The serviceaccount controller creating "default" in the default namespace shows the
	// controller manager is connected, authorized and has synced its informers.
	return p.waitReady(2*time.Minute, func() error {
		_, err := cp.kube.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errNotReady
		}
		return err
	})
}

// restConfig is a client configuration for the apiserver with the given bearer token.
func (cp *controlPlane) restConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.caPEM},
		// Tests poll; client-side throttling would only add waiting.
		QPS:   100,
		Burst: 200,
	}
}

func (cp *controlPlane) kubeconfigPath(name string) string {
	return filepath.Join(cp.dir, name+".kubeconfig")
}

// writeKubeconfig writes a kubeconfig for a component that authenticates with token.
func (cp *controlPlane) writeKubeconfig(name, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.host, CertificateAuthorityData: cp.caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: name}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, cp.kubeconfigPath(name))
}

func httpsClient(caPEM []byte) (*http.Client, error) {
	tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// httpOK succeeds when GET url answers 200.
func httpOK(c *http.Client, url, token string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// cluster is the control plane shared by every test in the package, started by TestMain.
var cluster *controlPlane

// useCluster returns the shared control plane and, if the test fails, prints the tail of
// every component's log with the test's output.
func useCluster(t testing.TB) *controlPlane {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:%s", cluster.logTails(60))
		}
	})
	return cluster
}

// newNamespace creates a namespace with a unique name and labels, deleted when the test
// ends, and waits for its default ServiceAccount (pods cannot be created before it exists).
func newNamespace(t testing.TB, prefix string, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	ns, err := cluster.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cluster.kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	waitFor(t, time.Minute, "default ServiceAccount in "+ns.Name, func() (bool, string) {
		_, err := cluster.kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return ns.Name
}

// waitFor polls cond until it reports done, failing the test after timeout with the last
// state cond described.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
