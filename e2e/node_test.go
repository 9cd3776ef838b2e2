package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/hubtest"
)

// The real node: containerd (Debian's) with runc and the CNI bridge plugin, a kubelet and
// kube-scheduler built by hack/tools.sh, and the images hack/node.sh builds without Docker.
// Download Jobs of the real-node Composition run as real pods there, downloading from a fake
// Hub on the bridge's gateway with the real hf CLI.
const (
	nodeName = "e2e-node"
	// Images are imported under the names CRI normalises to (docker.io/...), so that a pod
	// naming them never makes containerd look for them anywhere else.
	downloaderImage = "docker.io/hfops/downloader:2.4.0" // script.HubVersion, as hack/node.sh tags it
	pauseImage      = "docker.io/hfops/pause:local"
	// The node is tainted so that only pods tolerating this run on it: the tests that play the
	// kubelet by hand keep their pods to themselves.
	realNodeTaint = "e2e.hfops.kamal.dev/real-node"
	// realNodeComposition is the example's Composition with the Input a platform team running
	// this node would set: the downloader image, never pulled, the taint tolerated, hf pointed
	// at the fake Hub, and requests that fit a 2-core machine.
	realNodeComposition = "modeldownloads-real-node"
	// volumeOwner is the user and group the Jobs run as by default: the static volumes are
	// theirs, as an NFS export prepared for them would be.
	volumeOwner = 1000
)

// node is the running real node.
type node struct {
	dir        string
	bridge     string
	gateway    net.IP
	socket     string // containerd's
	containerd *process
	kubelet    *process
	scheduler  *process
	hub        *hubtest.Hub
	// apiserver is the address on the gateway through which pods reach the apiserver
	// (there is no kube-proxy to route the kubernetes Service).
	apiserver *net.TCPAddr
	proxy     net.Listener
}

var (
	nodeOnce sync.Once
	realNode *node
	errNode  error
)

// useNode returns the real node, starting it (and Crossplane with the function) the first
// time a test needs it.
func useNode(t testing.TB) *node {
	t.Helper()
	x := useFunction(t)
	nodeOnce.Do(func() {
		realNode, errNode = startNode(cluster)
		if errNode == nil {
			errNode = applyRealNodeComposition(x, realNode)
		}
	})
	if errNode != nil {
		t.Fatalf("start the real node: %v", errNode)
	}
	return realNode
}

// startNode creates the bridge, starts the fake Hub on its gateway, containerd (with the
// images imported before anything can name them), kube-scheduler and the kubelet, and waits
// for the node to be Ready. Whatever started is torn down by cluster.stop.
func startNode(cp *controlPlane) (*node, error) {
	n := &node{dir: filepath.Join(cp.dir, "node")}
	for _, d := range []string{"cni", "ipam", "kubelet", "volumes"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	cp.beforeStop(n.teardown)
	if err := n.startNetwork(); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(n.gateway.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("fake Hub on the bridge: %w", err)
	}
	n.hub = hubtest.New(l)
	if n.apiserver, err = proxyAPIServer(n, cp); err != nil {
		return nil, err
	}
	if err := n.startContainerd(cp); err != nil {
		return nil, err
	}
	if err := n.startScheduler(cp); err != nil {
		return nil, err
	}
	if err := n.startKubelet(cp); err != nil {
		return nil, err
	}
	return n, nil
}

// startNetwork creates a bridge of the test's own with an address of a /24 no interface on
// this machine uses, and writes the CNI configuration that puts pods on it. Pods get no
// default route and no DNS servers: the gateway (where the fake Hub listens) is all they
// reach.
func (n *node) startNetwork() error {
	subnet := cluster.podSubnet
	n.gateway = podGateway(subnet)
	n.bridge = fmt.Sprintf("hfdl%d", os.Getpid()%100000)
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.gateway.String() + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q, "gateway": %q}]],
      "routes": [],
      "dataDir": %q
    }
  }]
}
`, n.bridge, subnet.String(), n.gateway.String(), filepath.Join(n.dir, "ipam"))
	return os.WriteFile(filepath.Join(n.dir, "cni", "10-e2e.conflist"), []byte(conf), 0o600)
}

// podGateway is the first address of the pod network: the bridge's.
func podGateway(subnet *net.IPNet) net.IP {
	ip := subnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], 1).To4()
}

// freeSubnet picks a 10.x.y.0/24 that overlaps no address of this machine's interfaces.
func freeSubnet() (*net.IPNet, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	seed := os.Getpid()
	for i := range 200 {
		k := (seed + i*37) % 40000
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+k/256%50, k%256))
		if !slices.ContainsFunc(addrs, func(a net.Addr) bool {
			ipn, ok := a.(*net.IPNet)
			return ok && (ipn.Contains(subnet.IP) || subnet.Contains(ipn.IP))
		}) {
			return subnet, nil
		}
	}
	return nil, fmt.Errorf("no free 10.x.y.0/24 for the pod network")
}

// startContainerd runs Debian's containerd on a socket, root and state of the test's, and
// imports the images hack/node.sh built. No image is ever pulled: containerd's CRI would pull
// a missing sandbox image, so both images are imported before the kubelet exists, and pods
// name the downloader with imagePullPolicy Never.
func (n *node) startContainerd(cp *controlPlane) error {
	n.socket = filepath.Join(n.dir, "containerd.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # Without it runc fails with "can't get final child's PID from pipe" on this machine.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
`, filepath.Join(n.dir, "containerd"), filepath.Join(n.dir, "containerd-state"), n.socket, pauseImage, filepath.Join(n.dir, "cni"))
	path := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return err
	}
	p, err := startProcess(cp.logDir, "containerd", nil, "/usr/bin/containerd", "--config", path)
	if err != nil {
		return err
	}
	cp.track(p)
	n.containerd = p
	if err := p.waitReady(time.Minute, func() error { _, err := n.ctr("version"); return err }); err != nil {
		return err
	}
	for _, img := range []string{"pause", "downloader"} {
		if out, err := n.ctr("images", "import", filepath.Join(cp.binDir, "images", img+".tar")); err != nil {
			return fmt.Errorf("import the %s image: %w\n%s", img, err, out)
		}
	}
	out, err := n.ctr("images", "ls", "-q")
	if err != nil {
		return err
	}
	for _, want := range []string{pauseImage, downloaderImage} {
		if !slices.Contains(strings.Fields(out), want) {
			return fmt.Errorf("containerd holds %q after the import, not %s", out, want)
		}
	}
	return nil
}

// ctr runs Debian's ctr against the node's containerd, in the CRI's namespace.
func (n *node) ctr(args ...string) (string, error) {
	out, err := exec.Command("ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

func (n *node) startScheduler(cp *controlPlane) error {
	p, err := startProcess(cp.logDir, "kube-scheduler", nil, cp.bin("kube-scheduler"),
		"--kubeconfig="+cp.kubeconfigPath("kube-scheduler"),
		"--leader-elect=false",
		// Readiness is judged by pods being scheduled; nothing reads its endpoints.
		"--secure-port=0",
	)
	if err != nil {
		return err
	}
	cp.track(p)
	n.scheduler = p
	return nil
}

// startKubelet runs the kubelet as system:node:<nodeName> (the Node authorizer gives it the
// Secrets and ConfigMaps of its pods and nothing else), serving on loopback, its node address
// the bridge's gateway, and waits for the node to be Ready.
func (n *node) startKubelet(cp *controlPlane) error {
	return startWithRetry(2, 2*time.Minute, func(ports []int) (*process, func() error, error) {
		config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
# This machine has cgroup v1 and no systemd: plain cgroupfs, no QoS hierarchy to enforce.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# No DNS: pods reach the fake Hub by address, and nothing else.
resolvConf: ""
# Never collect the imported images (a collected image would be pulled again) and never
# evict for a host disk that is fuller than a real node's would be.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
registerWithTaints:
- {key: %s, value: "true", effect: NoSchedule}
`, ports[0], ports[1], filepath.Join(cp.dir, "pki", "ca.crt"), n.socket, realNodeTaint)
		path := filepath.Join(n.dir, "kubelet.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			return nil, nil, err
		}
		p, err := startProcess(cp.logDir, "kubelet", nil, cp.bin("kubelet"),
			"--config="+path,
			"--kubeconfig="+cp.kubeconfigPath("kubelet"),
			"--hostname-override="+nodeName,
			"--node-ip="+n.gateway.String(),
			"--root-dir="+filepath.Join(n.dir, "kubelet"),
			"--cert-dir="+filepath.Join(n.dir, "kubelet", "pki"),
		)
		if err != nil {
			return nil, nil, err
		}
		cp.track(p)
		n.kubelet = p
		return p, n.ready, nil
	})
}

// ready succeeds once the node is Ready and the node lifecycle controller has taken away the
// not-ready taint that admission gave it, so pods can be scheduled.
func (n *node) ready() error {
	nd, err := cluster.kube.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, taint := range nd.Spec.Taints {
		if taint.Key != realNodeTaint {
			return fmt.Errorf("%w: taint %s", errNotReady, taint.Key)
		}
	}
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("%w: conditions %v", errNotReady, nd.Status.Conditions)
}

// teardown stops the node's pods, then the node, and leaves nothing of it on the machine:
// containers, mounts under the test's directory, the bridge.
func (n *node) teardown() {
	ctx := context.Background()
	// Pods still on the node (a test that failed before its namespace went) are deleted so
	// that the kubelet stops them and their sandboxes, which tears down their network.
	_ = cluster.kube.CoreV1().Pods(metav1.NamespaceAll).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))},
		metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
	if n.kubelet != nil && n.containerd != nil {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if out, err := n.ctr("tasks", "ls", "-q"); err == nil && strings.TrimSpace(out) == "" {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, p := range []*process{n.kubelet, n.scheduler} {
		if p != nil {
			p.stop()
		}
	}
	if n.containerd != nil {
		// Whatever the kubelet did not stop in time.
		if out, err := n.ctr("tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = n.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", id)
				_, _ = n.ctr("tasks", "delete", "--force", id)
			}
		}
		n.containerd.stop()
		killShims(n.socket)
	}
	if n.hub != nil {
		n.hub.Close()
	}
	if n.proxy != nil {
		_ = n.proxy.Close()
	}
	unmountUnder(n.dir)
	if n.bridge != "" {
		_ = exec.Command("ip", "link", "del", n.bridge).Run()
	}
}

// killShims kills the runc shims of the containerd on socket: they outlive containerd by
// design.
func killShims(socket string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(socket)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first (the kubelet's volumes, the
// containers' root filesystems), so the directory can be removed.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	var mounts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			mounts = append(mounts, fields[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// imagePulls counts the image pulls containerd logged (CRI's PullImage): none may happen.
func (cp *controlPlane) imagePulls() (int, error) {
	b, err := os.ReadFile(cp.logPath("containerd"))
	if os.IsNotExist(err) {
		return 0, nil
	}
	return bytes.Count(b, []byte("PullImage")), err
}

// applyRealNodeComposition applies the example's Composition under realNodeComposition, its
// Input set for the real node.
func applyRealNodeComposition(x *crossplane, n *node) error {
	return applyNodeComposition(x, n, realNodeComposition, functionName, nil)
}

// applyNodeComposition applies the example's Composition under name, its Input set for the
// real node, then by edit (if any), and its pipeline calling the function package function.
func applyNodeComposition(x *crossplane, n *node, name, function string, edit func(input map[string]any)) error {
	objs, err := readObjects(exampleFile("composition.yaml"))
	if err != nil {
		return err
	}
	if len(objs) != 1 {
		return fmt.Errorf("example/composition.yaml: want one Composition, got %d objects", len(objs))
	}
	comp := objs[0]
	comp.SetName(name)
	steps, _, _ := unstructured.NestedSlice(comp.Object, "spec", "pipeline")
	if len(steps) != 1 {
		return fmt.Errorf("example/composition.yaml: want one pipeline step, got %d", len(steps))
	}
	steps[0].(map[string]any)["functionRef"] = map[string]any{"name": function}
	input := steps[0].(map[string]any)["input"].(map[string]any)
	input["image"] = downloaderImage
	input["imagePullPolicy"] = string(corev1.PullNever)
	input["tolerations"] = []any{map[string]any{"key": realNodeTaint, "operator": "Exists", "effect": "NoSchedule"}}
	input["env"] = []any{
		map[string]any{"name": "HF_ENDPOINT", "value": n.hub.URL()},
		map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": n.apiserver.IP.String()},
		map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": strconv.Itoa(n.apiserver.Port)},
	}
	input["resources"] = map[string]any{"cpu": "250m", "memory": "512Mi"}
	if edit != nil {
		edit(input)
	}
	if err := unstructured.SetNestedSlice(comp.Object, steps, "spec", "pipeline"); err != nil {
		return err
	}
	return x.apply.apply(context.Background(), comp)
}

// realVolume creates the PVC a ModelDownload names, bound to a static hostPath
// PersistentVolume in the test's directory owned by the Jobs' user, and returns that
// directory: what the pods write there, the test reads.
func realVolume(t testing.TB, n *node, ns, pvc string) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(n.dir, "volumes", ns+"-"+pvc)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, volumeOwner, volumeOwner); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + pvc},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("50Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: pvc},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: ptr.To(corev1.HostPathDirectory)},
			},
		},
	}
	if _, err := cluster.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PersistentVolume: %v", err)
	}
	t.Cleanup(func() {
		_ = cluster.kube.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	createPVC(t, ns, pvc)
	waitFor(t, time.Minute, "PVC "+ns+"/"+pvc+" bound", func() (bool, string) {
		c, err := cluster.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return c.Status.Phase == corev1.ClaimBound, string(c.Status.Phase)
	})
	return dir
}

// nodePods lists the pods bound to the node in namespace ns.
func nodePods(ctx context.Context, ns string) ([]corev1.Pod, error) {
	l, err := cluster.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// proxyAPIServer forwards connections to the apiserver from an address on the bridge's
// gateway, the only address pods reach, and returns that address. TLS passes through: the
// apiserver's certificate names the gateway.
func proxyAPIServer(n *node, cp *controlPlane) (*net.TCPAddr, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(n.gateway.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("apiserver proxy on the bridge: %w", err)
	}
	n.proxy = l
	target := strings.TrimPrefix(cp.host, "https://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				up, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer func() { _ = up.Close() }()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr), nil
}
