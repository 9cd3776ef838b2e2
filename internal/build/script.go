package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/script"
)

// The download script reaches the Jobs once per ModelDownload, as a
// ConfigMap mounted read-only into every Job, instead of 15 KB of shell in
// each Job's command. Its name carries a hash of the script (and of the XR,
// so two ModelDownloads never compose the same object): a function version
// with another script makes a new ConfigMap, the Jobs that started with the
// old one keep it until they go, and no Job starts before its ConfigMap
// exists (a pod would not start without its volume).

const (
	ScriptFile      = "download.sh"
	ScriptMountPath = "/opt/hf-download"
	ScriptKeyPrefix = "script-"
)

// scriptDigest is part of every config hash: a new script (or helper) is a
// new Job.
var scriptDigest = func() []byte {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(script.Files)) {
		// Length-prefixed, so no two sets of files hash alike.
		_, _ = fmt.Fprintf(h, "%d:%s%d:%s", len(name), name, len(script.Files[name]), script.Files[name])
	}
	return h.Sum(nil)
}()

// ScriptName is the ConfigMap's name for this XR: hf-dl-<xr>-script-<hash>,
// at most 63 characters, like a Job's.
func ScriptName(o naming.Owner, pvc string) string {
	var scratch [256]byte
	c := naming.NewCanonical(scratch[:], "script/v1")
	c.Bytes(scriptDigest)
	o.Identify(&c)
	c.Str("pvc", pvc)
	d := c.Sum()
	return naming.JobName(o.Name, "script", hex.EncodeToString(d[:naming.SpecHashLen/2]))
}

// ScriptKey is the composition resource name of the ConfigMap named name.
func ScriptKey(name string) string { return ScriptKeyPrefix + name[len(name)-naming.SpecHashLen:] }

// scriptData is the ConfigMap's files: the script's, the PVC's name, and
// where the pods report progress.
func (b *Builder) scriptData() map[string]string {
	data := maps.Clone(script.Files)
	data[script.PVCFile] = b.Spec.StoragePVC
	data[script.ProgressFile] = b.namespace + "/" + b.ProgressMap
	return data
}

// ScriptConfigMap returns the ConfigMap holding the script.
func (b *Builder) ScriptConfigMap() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      b.ScriptMap,
			Namespace: b.namespace,
			Labels:    map[string]string{naming.LabelApp: naming.AppName, naming.LabelParent: b.ParentLabel},
		},
		Data:      b.scriptData(),
		Immutable: ptr.To(true),
	}
}
