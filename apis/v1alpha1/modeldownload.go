package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Every field of the spec says, in its hash tag, whether changing it rolls
// the Jobs: hash:"<key>" puts it, under that key, into the hash that names
// the Jobs; hash:"-" leaves it out (it decides when Jobs start or where the
// volume comes from, not what a Job is); hash:",inline" hashes the fields of
// a nested object in place (nothing when it is absent); the models are each
// hashed into their own Jobs (hash:"per-model"). On Model, ",content" marks what
// lands on disk, which the download script compares with its completion
// marker. TestEveryFieldChoosesWhetherItRollsJobs fails for a field without
// the tag. The order of the fields is the order they are hashed in: moving
// one renames every Job.

// ModelDownload downloads Hugging Face repos onto a PersistentVolumeClaim,
// one Job per model.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced
// +kubebuilder:printcolumn:name=DOWNLOADED,type=string,JSONPath=`.status.progress`,description="Models downloaded out of all models."
// +kubebuilder:printcolumn:name=BYTES,type=string,JSONPath=`.status.downloaded`,description="Gigabytes on disk out of all the models will hold, while they download too."
// +kubebuilder:printcolumn:name=STATE,type=string,JSONPath=`.status.conditions[?(@.type=='ModelsDownloaded')].reason`,description="Downloaded, Downloading or DownloadFailed."
// +kubebuilder:printcolumn:name=FAILED,type=string,JSONPath=`.status.failed`,priority=1
type ModelDownload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelDownloadSpec   `json:"spec"`
	Status ModelDownloadStatus `json:"status,omitempty"`
}

// ModelDownloadSpec is what to download and where.
type ModelDownloadSpec struct {
	// Models are the Hugging Face repos to download, one Job each.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1300
	// +listType=map
	// +listMapKey=name
	Models []Model `json:"models" hash:"per-model"`

	// StoragePVC is a PersistentVolumeClaim in this namespace; models land on it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	StoragePVC string `json:"storagePVC" hash:"storagePVC"`

	// NodePool runs downloads on nodes labelled karpenter.sh/nodepool=<nodePool>.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	NodePool string `json:"nodePool,omitempty" hash:"nodePool"`

	// HFTokenRef is a Secret in this namespace holding a Hugging Face token.
	// It reaches the download pods only as HF_TOKEN from a secretKeyRef.
	// +optional
	HFTokenRef *TokenRef `json:"hfTokenRef,omitempty" hash:",inline"`

	// Storage has the function create the storagePVC. Without it the PVC must
	// exist.
	// +optional
	Storage *Storage `json:"storage,omitempty" hash:"-"` // the PVC's uid, not its spec, says which volume a Job writes to

	// +kubebuilder:default={}
	// +optional
	Settings Settings `json:"settings,omitempty" hash:",inline"`
}

// Model is one Hugging Face repo.
type Model struct {
	// Name is the repo id, org/name or name. Stored at <mountPath>/<name>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=193
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)?$`
	Name string `json:"name" hash:"name,content"`

	// RepoType is passed to hf download --repo-type.
	// +kubebuilder:validation:Enum=model;dataset
	// +kubebuilder:default=model
	// +optional
	RepoType string `json:"repoType,omitempty" hash:"repoType,content"`

	// Revision is the branch, tag or commit passed to hf download --revision.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._+][A-Za-z0-9._+/-]*$`
	// +kubebuilder:default=main
	// +optional
	Revision string `json:"revision,omitempty" hash:"revision,content"`

	// Include are globs passed to hf download --include.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	Include []string `json:"include,omitempty" hash:"include,content"`

	// Exclude are globs passed to hf download --exclude.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	Exclude []string `json:"exclude,omitempty" hash:"exclude,content"`

	// SHA is an auditor's note (informational); part of the spec hash.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	SHA string `json:"sha,omitempty" hash:"sha"`

	// RetryCount is the Job's backoffLimit.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=2
	// +optional
	RetryCount int64 `json:"retryCount,omitempty" hash:"retryCount"`
}

// TokenRef names the key of a Secret.
type TokenRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name" hash:"tokenSecret"`

	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default=token
	// +optional
	Key string `json:"key,omitempty" hash:"tokenKey"`
}

// Storage is the PVC the function composes.
type Storage struct {
	// Size is the capacity, such as 200Gi.
	Size string `json:"size" hash:"-"`

	// StorageClassName is the storage class; the cluster default when left out.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty" hash:"-"`

	// +kubebuilder:validation:items:Enum=ReadWriteOnce;ReadWriteMany;ReadWriteOncePod
	// +kubebuilder:default={ReadWriteOnce}
	// +optional
	AccessModes []string `json:"accessModes,omitempty" hash:"-"`

	// +kubebuilder:validation:Enum=Filesystem
	// +kubebuilder:default=Filesystem
	// +optional
	VolumeMode string `json:"volumeMode,omitempty" hash:"-"`

	// DeletionPolicy Orphan (the default) keeps the PVC and its models when
	// this ModelDownload is deleted; Delete deletes them with it.
	// +kubebuilder:validation:Enum=Orphan;Delete
	// +kubebuilder:default=Orphan
	// +optional
	DeletionPolicy string `json:"deletionPolicy,omitempty" hash:"-"`
}

// Settings shape every download of the ModelDownload.
type Settings struct {
	// TimeoutMillis is the Job's activeDeadlineSeconds, in milliseconds
	// (rounded up to seconds).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2592000000
	// +optional
	TimeoutMillis int64 `json:"timeoutMillis,omitempty" hash:"timeoutMillis"`

	// EnableHFTransfer turns on hf_xet's high performance mode.
	// +optional
	EnableHFTransfer bool `json:"enableHFTransfer,omitempty" hash:"enableHFTransfer"`

	// KeepAliveSeconds is the Job's ttlSecondsAfterFinished, at least 30: the
	// function must see how a Job ended before it goes.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +kubebuilder:default=3600
	// +optional
	KeepAliveSeconds int64 `json:"keepAliveSeconds,omitempty" hash:"keepAliveSeconds"`

	// CPU request and limit of each download; default 1.
	// +optional
	CPU string `json:"cpu,omitempty" hash:"cpu"`

	// Memory request and limit of each download; default 4Gi.
	// +optional
	Memory string `json:"memory,omitempty" hash:"memory"`

	// ForceReload re-downloads every file; toggling it starts new Jobs.
	// +optional
	ForceReload bool `json:"forceReload,omitempty" hash:"forceReload"`

	// StallTimeoutSeconds: a download that writes no byte for this long is
	// stopped and fails as stalled; the Job's retries resume it. Default: the
	// Input's, 600.
	// +kubebuilder:validation:Minimum=30
	// +kubebuilder:validation:Maximum=86400
	// +optional
	StallTimeoutSeconds int64 `json:"stallTimeoutSeconds,omitempty" hash:"stallTimeoutSeconds"`

	// MaxParallel: at most this many of the ModelDownload's download Jobs are
	// active at once; the other models wait, Pending with "queued: N ahead",
	// and start in spec order as earlier ones finish. Unset: no limit.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	MaxParallel int64 `json:"maxParallel,omitempty" hash:"-"` // when Jobs start, not what they are

	// Reclaim says what happens to a model's directory once no model of
	// this ModelDownload wants it: Retain (the default) leaves it on the
	// PVC; Delete removes it, with a short Job, unless another
	// ModelDownload of the namespace wants the same directory on the same
	// PVC. status.reclaims[] says how it went and how many bytes it freed.
	// +kubebuilder:validation:Enum=Retain;Delete
	// +kubebuilder:default=Retain
	// +optional
	Reclaim string `json:"reclaim,omitempty" hash:"-"` // what happens after a model goes, not what its Job is

	// ResyncInterval, such as 24h (at least 1h; unset: never), has each
	// completed model whose revision is a branch or tag, not a commit,
	// checked again that often: a short Job asks the Hub which commit the
	// revision names now and, when it moved, downloads the new commit beside
	// the old one and switches the model's directory to it in one step. The
	// model stays Completed, and the XR Ready, throughout.
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +optional
	ResyncInterval string `json:"resyncInterval,omitempty" hash:"-"` // when a model is checked again, not what its Job is
}

// ModelDownloadStatus is what the function observed.
type ModelDownloadStatus struct {
	// Pending are the models whose download has not finished.
	// +optional
	Pending []string `json:"pending"`
	// Completed are the models on disk.
	// +optional
	Completed []string `json:"completed"`
	// Failed are the models whose download failed or whose spec is invalid.
	// +optional
	Failed []string `json:"failed"`
	// Progress is the models downloaded out of all models, such as 1/2.
	// +optional
	Progress string `json:"progress,omitempty"`
	// Downloaded is the bytes on disk out of all the models will hold, in
	// decimal GB, such as 37.2/140.5 GB: completed models and what the
	// downloading ones reported.
	// +optional
	Downloaded string `json:"downloaded,omitempty"`
	// PVCUID is the uid of the PVC the models are on; a new PVC (deleted and
	// made again) is a new volume, whose models are downloaded again.
	// +optional
	PVCUID string `json:"pvcUID,omitempty"`
	// +optional
	Models []ModelStatus `json:"models,omitempty"`
	// Reclaims are the directories of models removed from the spec under
	// settings.reclaim Delete: those being removed, and the last ones
	// removed or kept.
	// +optional
	Reclaims []ReclaimStatus `json:"reclaims,omitempty"`
}

// ReclaimStatus is the removal of one model's directory from the PVC.
type ReclaimStatus struct {
	// Name is the model whose directory it is.
	Name string `json:"name"`
	// +optional
	Path string `json:"path,omitempty"`
	// Phase is Pending (waiting for the PVC or a slot), Running (the Job
	// removes it), Completed (removed), Failed, or Kept (another
	// ModelDownload of the namespace wants that directory on that PVC).
	// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed;Kept
	Phase string `json:"phase"`
	// +optional
	Message string `json:"message,omitempty"`
	// JobName is the Job that removes the directory.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// Attempt numbers the Jobs: a failed removal is tried again under a new
	// value of the hfops.kamal.dev/retry annotation.
	// +optional
	Attempt int64 `json:"attempt,omitempty"`
	// Retry is the hfops.kamal.dev/retry annotation when the removal failed.
	// +optional
	Retry string `json:"retry,omitempty"`
	// BytesFreed is the disk space the removal gave back (the blocks of the
	// files and directories it removed); Files the files it removed.
	// +optional
	BytesFreed *int64 `json:"bytesFreed,omitempty"`
	// +optional
	Files *int64 `json:"files,omitempty"`
}

// ModelStatus is one model's download.
type ModelStatus struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	JobName string `json:"jobName,omitempty"`
	// Hash names the Job of the current attempt (the end of jobName).
	// +optional
	Hash string `json:"hash,omitempty"`
	// Attempt is which attempt at this model's spec the Job is. A new spec, a
	// retry, or a Job lost before it finished starts the next one, under a
	// new Job name.
	// +optional
	Attempt int64 `json:"attempt,omitempty"`
	// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed
	// +optional
	Phase string `json:"phase,omitempty"`
	// Message says why the model waits or failed (the download pod's own
	// reason).
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Path string `json:"path,omitempty"`
	// ContentHash is what the Job puts on disk (repo, type, revision, globs),
	// as in its completion marker.
	// +optional
	ContentHash string `json:"contentHash,omitempty"`
	// IntentHash is what the user and the platform asked for: the spec, the
	// platform's settings but the image, the token. A completion recorded
	// under the current intent on the same volume holds when only the
	// function changed (its version, script or default image).
	// +optional
	IntentHash string `json:"intentHash,omitempty"`
	// Queue is, while the model is queued, the limit that holds it back:
	// Volume (a ReadWriteOncePod PVC, one download at a time), ModelDownload
	// (settings.maxParallel) or Namespace (the function's
	// maxActiveJobsPerNamespace). The message says the same for people.
	// +kubebuilder:validation:Enum=Volume;ModelDownload;Namespace
	// +optional
	Queue string `json:"queue,omitempty"`
	// Retry is the hfops.kamal.dev/retry annotation when the model failed;
	// annotating another value tries the model again.
	// +optional
	Retry string `json:"retry,omitempty"`
	// Commit is the commit that is on disk, as hf download resolved it.
	// +optional
	Commit string `json:"commit,omitempty"`
	// Files are the files of the revision that the globs select, all on disk.
	// +optional
	Files *int64 `json:"files,omitempty"`
	// Bytes is their size in bytes.
	// +optional
	Bytes *int64 `json:"bytes,omitempty"`
	// +optional
	DurationSeconds *int64 `json:"durationSeconds,omitempty"`
	// Progress is, while the model downloads, what its pod last reported (at
	// most every 15 s, when something moved): bytes and files on disk out of
	// the total, the rate over the last interval, the time left at that
	// rate, and when it last moved. Gone once the model completes.
	// +optional
	Progress *Progress `json:"progress,omitempty"`
	// Verified says every file was checked against the Hub's size and hash
	// (sha256 for LFS files, the git blob sha1 for the others) after the
	// download.
	// +optional
	Verified *bool `json:"verified,omitempty"`
	// Card is what the serving stack needs, read from the files downloaded
	// (config.json, the safetensors headers, README.md): what is not there
	// is left out.
	// +optional
	Card *Card `json:"card,omitempty"`
	// CheckedAt is when the Hub last said which commit the revision names:
	// when the download, or the last check of settings.resyncInterval,
	// completed. Set only with settings.resyncInterval.
	// +optional
	CheckedAt string `json:"checkedAt,omitempty"`
	// Resync is the last check of the model's revision, or the one under
	// way (settings.resyncInterval).
	// +optional
	Resync *ResyncStatus `json:"resync,omitempty"`
}

// ResyncStatus is a check of a completed model's revision against the Hub.
type ResyncStatus struct {
	// Check numbers the checks of the model's current attempt; JobName is
	// the Job of the current one.
	Check int64 `json:"check"`
	// +optional
	JobName string `json:"jobName,omitempty"`
	// Phase is Pending (due, waiting for a slot), Running, Completed (the
	// model is at the commit the revision names) or Failed (the files on
	// disk stay as they were; the next check comes an hour after the
	// failure).
	// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed
	Phase string `json:"phase"`
	// +optional
	Message string `json:"message,omitempty"`
	// FailedAt is when the last check failed.
	// +optional
	FailedAt string `json:"failedAt,omitempty"`
	// MovedFrom is the commit that the last check to find the revision
	// moved replaced, at MovedAt.
	// +optional
	MovedFrom string `json:"movedFrom,omitempty"`
	// +optional
	MovedAt string `json:"movedAt,omitempty"`
}

// Progress is a running download's last report.
type Progress struct {
	// +optional
	Bytes int64 `json:"bytes"`
	// +optional
	TotalBytes int64 `json:"totalBytes"`
	// +optional
	Files int64 `json:"files"`
	// +optional
	TotalFiles int64 `json:"totalFiles"`
	// +optional
	BytesPerSecond int64 `json:"bytesPerSecond"`
	// +optional
	ETASeconds int64 `json:"etaSeconds"`
	// +optional
	Updated string `json:"updated"`
}

// Card describes a downloaded model.
type Card struct {
	// +optional
	Architecture string `json:"architecture,omitempty"`
	// +optional
	ModelType string `json:"modelType,omitempty"`
	// +optional
	Dtype string `json:"dtype,omitempty"`
	// +optional
	ContextLength int64 `json:"contextLength,omitempty"`
	// +optional
	Parameters int64 `json:"parameters,omitempty"`
	// +optional
	License string `json:"license,omitempty"`
}
