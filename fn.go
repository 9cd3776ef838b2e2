package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/crossplane/function-sdk-go/errors"
	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/response"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/internal/respond"
)

// How soon Crossplane should call again, by default (the --ttl-* flags). While
// a download runs, status follows within 20 s even where realtime
// compositions are off (hf-operator requeued every 20 s); a missing token is
// checked again sooner.
const (
	ttlSettled     = response.DefaultTTL
	ttlDownloading = 20 * time.Second
	ttlWaiting     = 10 * time.Second
)

// Condition types the function sets on the XR (and its claim). Crossplane
// owns Ready and Synced, so the summary has a type of its own.
const (
	conditionDownloaded     = "ModelsDownloaded"
	conditionModelsValid    = "ModelsValid"
	conditionTokenAvailable = "HFTokenAvailable"
)

// Function turns a ModelDownload into download Jobs and folds their status
// back into it.
type Function struct {
	fnv1.UnimplementedFunctionRunnerServiceServer

	log logging.Logger
	// maxResponseBytes is the largest response Crossplane can receive;
	// zero means respond.CrossplaneMaxResponseBytes.
	maxResponseBytes int
	// ttlWaiting and ttlDownloading replace the defaults of the same names
	// when set.
	ttlWaiting, ttlDownloading time.Duration
	// now is the clock that says whether a check of a revision is due
	// (settings.resyncInterval); time.Now when nil.
	now func() time.Time
}

// RunFunction runs the Function: read the request, check the Input and the
// spec, ask for what it needs, decide model by model, respond. The user's
// mistakes are reported in the response (Fatal, Warning, conditions); the
// error return is for the transport only.
func (f *Function) RunFunction(_ context.Context, req *fnv1.RunFunctionRequest) (rsp *fnv1.RunFunctionResponse, err error) {
	// One bad request must never take the server, and every other XR's
	// composition, down with it.
	defer func() {
		if r := recover(); r != nil {
			f.log.Info("RunFunction panicked; the call fails, the server goes on", "panic", fmt.Sprint(r))
			rsp, err = nil, status.Error(codes.Internal, "function-hf-download failed internally; see its logs")
		}
	}()

	rsp = response.To(req, ttlSettled)
	o := read.Observe(req)
	log := f.log.WithValues("xr-kind", o.XR.Kind, "xr-name", o.XR.Name)

	in, err := read.DecodeInput(req.GetInput())
	if err != nil {
		response.Fatal(rsp, errors.Wrap(err, "invalid function input"))
		return rsp, nil
	}
	plat, errs := read.ResolvePlatform(in, defaultImage())
	env, envErrs := build.ResolveEnvelope(in, o.XR.Namespace != "")
	if errs = append(errs, envErrs...); len(errs) > 0 {
		response.Fatal(rsp, errors.Wrap(errs.ToAggregate(), "invalid function input"))
		return rsp, nil
	}
	spec, errs := read.ParseSpec(req.GetObserved().GetComposite().GetResource())
	errs = append(errs, read.NotCoveredBy(errs, read.ValidateSpec(&spec))...)
	if len(errs) > 0 {
		log.Debug("Spec is unusable", "errors", len(errs))
		response.Fatal(rsp, errors.Wrap(errs.ToAggregate(), "invalid ModelDownload spec"))
		return rsp, nil
	}

	// A claim's Jobs, token and PVC live in the claim's namespace, under
	// the claim's name, as they would for a namespaced XR.
	namespace, base := o.XR.Namespace, o.XR.Name
	if namespace == "" {
		namespace = o.XR.Labels[read.ClaimNamespaceLabel]
		base = read.OrDefault(o.XR.Labels[read.ClaimNameLabel], o.XR.Name)
	}
	if namespace == "" {
		response.Fatal(rsp, errors.Errorf("cannot tell where the Jobs go: the XR %q has no namespace and no %s label", o.XR.Name, read.ClaimNamespaceLabel))
		return rsp, nil
	}

	// Validated above.
	resyncEvery, _ := read.ResyncInterval(spec.Settings.ResyncInterval)
	now := time.Now()
	if f.now != nil {
		now = f.now()
	}

	b := build.NewBuilder(base, namespace, &spec, plat)
	rsp.Requirements = read.Requirements(namespace, b.ParentLabel, &spec, build.NeedsNamespaceOwner(&spec, env))
	rsp.Requirements.Resources[read.RequirementPeers] = read.PeerRequirement(o.XR, namespace)
	if plat.MaxActivePerNamespace > 0 {
		rsp.Requirements.Resources[read.RequirementNamespaceJobs] = read.NamespaceJobsRequirement(namespace)
	}
	d := read.DialectOf(req)
	required := d.Answered(req, rsp.GetRequirements())
	complete := read.Resolved(required, rsp.GetRequirements())
	d.Ask(rsp.GetRequirements())
	if !complete {
		// Crossplane fetches what was asked for and calls again at once.
		log.Debug("Waiting for Crossplane to resolve required resources")
		return rsp, nil
	}
	o.ReadRequired(required)

	token := read.ResolveToken(o.Secret, namespace, spec.HFTokenRef)
	storage := read.ResolveStorage(o.PVC, namespace, &spec)
	d.Explain(&token, &storage)
	if storage.Colocate {
		b.Colocate()
	}
	who := naming.Owner{Namespace: namespace, Name: base, XRName: o.XR.Name, XRUID: o.XR.UID, PVCUID: storage.UID}
	b.ScriptMap = build.ScriptName(who, spec.StoragePVC)
	b.ProgressMap = build.ProgressName(who)
	c := &composer{
		Facts: decide.Facts{
			Observation: &o,
			NameBase:    b.NameBase,
			MountPath:   plat.MountPath,
			PVC:         spec.StoragePVC,
			Token:       token,
			Storage:     storage,
			Digests:     build.Digests(naming.HashXR(&spec.ModelDownloadSpec, who, b.CPU, b.Memory, env.APIVersion), plat),
			Retry:       o.XR.Annotations[annotationRetry],
			Dirs:        decide.PeerDirectories(o.Peers, spec.StoragePVC),
			Self:        decide.DirUser{Name: base, Created: o.XR.Created, XRName: o.XR.Name},
			ObjectMode:  env.Object,
			ResyncEvery: resyncEvery,
			Now:         now,
		},
		builder:  b,
		envelope: env,
		queue:    decide.NewDownloadQueue(spec.StoragePVC, storage.OneAtATime, spec.Settings.MaxParallel),
		desired:  map[string]*resource.DesiredComposed{},
	}
	if plat.MaxActivePerNamespace > 0 {
		c.queue.Namespace = decide.Share(int(plat.MaxActivePerNamespace), read.ReadNamespaceJobs(required[read.RequirementNamespaceJobs]),
			o.Peers, b.ParentLabel)
	}
	if spec.Storage != nil {
		c.composePVC()
	}
	c.composeScripts()
	c.composeProgress()
	models := c.compose()
	reclaims := c.composeReclaims(who)
	// What was observed is not read past here. Letting it go, with the
	// request (not read again either), frees the observed Jobs, most of a
	// large call's memory, before the response is made (BenchmarkRSS).
	c.Observation = nil

	if err := respond.Respond(rsp, c.desired, c.builder.Template, decide.StatusValue(models, reclaims, storage.UID), allCompleted(models)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	report(rsp, base, &spec, models, token, storage, c.conflict)
	reportReclaims(rsp, base, spec.StoragePVC, reclaims)
	reportChecks(rsp, base, spec.StoragePVC, c.checks)
	switch {
	case !token.Usable() || !storage.Ready() || slices.ContainsFunc(models, decide.IsQueued):
		// A queued model may start as soon as a slot frees, in another
		// ModelDownload too, whose Jobs only Crossplane v2.4 and later watch
		// for this one (as required resources).
		rsp.Meta.Ttl = durationpb.New(cmp.Or(f.ttlWaiting, ttlWaiting))
	case anyUnsettled(models) || slices.ContainsFunc(reclaims, func(r decide.Reclaim) bool { return !r.Settled() }) ||
		slices.ContainsFunc(c.checks, func(ck decide.Check) bool { return ck.UnderWay() }):
		rsp.Meta.Ttl = durationpb.New(cmp.Or(f.ttlDownloading, ttlDownloading))
	}
	// Called again when the next check is due, if that comes first.
	for _, ck := range c.checks {
		if wait := ck.Due.Sub(now); !ck.Due.IsZero() && wait < rsp.GetMeta().GetTtl().AsDuration() {
			rsp.Meta.Ttl = durationpb.New(max(wait, time.Second))
		}
	}
	limit := f.maxResponseBytes
	if limit == 0 {
		limit = respond.CrossplaneMaxResponseBytes
	}
	if err := respond.CheckSize(rsp, len(models), limit); err != nil {
		// Never a desired state with some Jobs missing: Crossplane would
		// delete those.
		log.Info("Response is over Crossplane's gRPC message limit", "models", len(models))
		return respond.Oversize(rsp, err), nil
	}
	log.Debug("Composed download Jobs", "models", len(models), "resources", len(c.desired))
	return rsp, nil
}

// composePVC composes the PVC of spec.storage. Until it exists no Job may
// mount it, so none starts (see read.ResolveStorage).
func (c *composer) composePVC() {
	st := c.builder.Spec.Storage
	policy := build.Manage
	if st.DeletionPolicy == read.DeletionOrphan {
		policy = build.KeepOnDelete
	}
	ready := resource.ReadyFalse
	if c.PVCObserved && c.Storage.Ready() {
		ready = resource.ReadyTrue
	}
	c.desire(read.PVCKey, c.envelope.Wrap(build.AsUnstructured(c.builder.PVC(c.Namespace)), "", policy), ready)
}

// composeScripts composes the ConfigMap of the current script, and keeps
// older ones while a Job observed still mounts them.
func (c *composer) composeScripts() {
	name := c.builder.ScriptMap
	key := build.ScriptKey(name)
	c.desire(key, c.envelope.Wrap(build.AsUnstructured(c.builder.ScriptConfigMap()), "", build.Manage), resource.ReadyTrue)
	s, ok := c.Scripts[key]
	c.scriptReady = ok && s.Exists && s.Name == name && !s.Deleting
	mounted := map[string]bool{}
	for _, js := range c.Jobs {
		for _, j := range js {
			mounted[j.ScriptMap()] = true
		}
	}
	for k, s := range c.Scripts {
		if k != key && mounted[s.Name] {
			c.desire(k, c.envelope.Wrap(build.KeepAsObserved(s.Manifest), "", build.Manage), resource.ReadyTrue)
		}
	}
}

// report adds the conditions and warnings a user reads on the XR.
// name is the ModelDownload as its user knows it (a claim's name for a claim's XR).
func report(rsp *fnv1.RunFunctionResponse, name string, spec *read.XRSpec, models []decide.ModelStatus, token read.TokenState, storage read.StorageState, conflicts []string) {
	s, reason, msg := decide.Summary(models)
	condition(rsp, conditionDownloaded, s, reason, msg)
	for _, m := range models {
		if m.State == decide.StateFailed {
			response.Warning(rsp, errors.Errorf("model %s failed: %s (to try again as it is: kubectl annotate --overwrite modeldownload %s %s=<a new value>)",
				m.Name, read.OrDefault(m.Message, "no reason given"), name, annotationRetry)).TargetCompositeAndClaim()
		}
	}
	reportModels(rsp, spec)
	reportToken(rsp, spec, token)
	reportStorage(rsp, spec, storage)
	reportConflicts(rsp, conflicts)
}

// reportReclaims says, once, what each reclaim that completed freed; and
// warns of those that failed. name is the ModelDownload as its user knows it.
func reportReclaims(rsp *fnv1.RunFunctionResponse, name, pvc string, reclaims []decide.Reclaim) {
	for i := range reclaims {
		st := &reclaims[i].Status
		switch {
		case reclaims[i].Freed && st.BytesFreed != nil:
			response.Normalf(rsp, "reclaimed %s from PersistentVolumeClaim %q: %d files, %s freed",
				st.Path, pvc, *st.Files, decide.DecimalBytes(*st.BytesFreed)).TargetCompositeAndClaim()
		case reclaims[i].Freed:
			response.Normalf(rsp, "reclaimed %s from PersistentVolumeClaim %q", st.Path, pvc).TargetCompositeAndClaim()
		case st.Phase == read.PhaseFailed:
			response.Warning(rsp, errors.Errorf("reclaiming %s failed: %s (to try again: kubectl annotate --overwrite modeldownload %s %s=<a new value>)",
				st.Path, read.OrDefault(st.Message, "no reason given"), name, annotationRetry)).TargetCompositeAndClaim()
		}
	}
}

// reportChecks says, once, which models' revisions moved and were
// downloaded again; and warns of the checks that failed. name is the
// ModelDownload as its user knows it.
func reportChecks(rsp *fnv1.RunFunctionResponse, name, pvc string, checks []decide.Check) {
	for _, ck := range checks {
		switch {
		case ck.Moved:
			response.Normalf(rsp, "%s moved upstream from commit %s to %s: downloaded again into PersistentVolumeClaim %q and switched in one step (%d files, %s)",
				ck.Model, read.OrDefault(ck.From, "unknown"), ck.Now.Commit, pvc, ck.Now.Files, decide.DecimalBytes(ck.Now.Bytes)).TargetCompositeAndClaim()
		case ck.Failed:
			response.Warning(rsp, errors.Errorf("checking %s against the Hub failed: %s; its files on disk stay as they were, and ModelDownload %s checks again in an hour",
				ck.Model, read.OrDefault(ck.Why, "no reason given"), name)).TargetCompositeAndClaim()
		}
	}
}

func reportModels(rsp *fnv1.RunFunctionResponse, spec *read.XRSpec) {
	var invalid []string
	for i := range spec.Models {
		for _, e := range spec.Models[i].Errs {
			response.Warning(rsp, e).TargetCompositeAndClaim()
			invalid = append(invalid, e.Error())
		}
	}
	if len(invalid) > 0 {
		condition(rsp, conditionModelsValid, fnv1.Status_STATUS_CONDITION_FALSE, "InvalidModels",
			"skipped invalid models: "+strings.Join(invalid, "; "))
		return
	}
	condition(rsp, conditionModelsValid, fnv1.Status_STATUS_CONDITION_TRUE, "AllModelsValid", "")
}

func reportToken(rsp *fnv1.RunFunctionResponse, spec *read.XRSpec, token read.TokenState) {
	switch {
	case spec.HFTokenRef == nil:
	case !token.Usable():
		response.Warning(rsp, errors.New("no new download Jobs start until the token is readable: "+token.Problem)).TargetCompositeAndClaim()
		condition(rsp, conditionTokenAvailable, fnv1.Status_STATUS_CONDITION_FALSE, token.Reason, token.Problem)
	default:
		condition(rsp, conditionTokenAvailable, fnv1.Status_STATUS_CONDITION_TRUE, token.Reason,
			fmt.Sprintf("Secret %q key %q holds a token", spec.HFTokenRef.Name, spec.HFTokenRef.Key))
	}
}

func reportStorage(rsp *fnv1.RunFunctionResponse, spec *read.XRSpec, storage read.StorageState) {
	if storage.Ready() {
		condition(rsp, read.ConditionStorageReady, fnv1.Status_STATUS_CONDITION_TRUE, storage.Reason, storage.Message(spec.StoragePVC))
		return
	}
	response.Warning(rsp, errors.New(storage.Problem)).TargetCompositeAndClaim()
	condition(rsp, read.ConditionStorageReady, fnv1.Status_STATUS_CONDITION_FALSE, storage.Reason, storage.Problem)
}

func reportConflicts(rsp *fnv1.RunFunctionResponse, conflicts []string) {
	if len(conflicts) == 0 {
		condition(rsp, decide.ConditionConflict, fnv1.Status_STATUS_CONDITION_FALSE, decide.ReasonNoConflict, "")
		return
	}
	for _, n := range conflicts {
		response.Warning(rsp, errors.New("directory conflict: "+n)).TargetCompositeAndClaim()
	}
	condition(rsp, decide.ConditionConflict, fnv1.Status_STATUS_CONDITION_TRUE, decide.ReasonConflicting, strings.Join(conflicts, "; "))
}

func condition(rsp *fnv1.RunFunctionResponse, typ string, s fnv1.Status, reason, msg string) {
	c := &fnv1.Condition{Type: typ, Status: s, Reason: reason, Target: fnv1.Target_TARGET_COMPOSITE_AND_CLAIM.Enum()}
	if msg != "" {
		c.Message = &msg
	}
	rsp.Conditions = append(rsp.Conditions, c)
}

// allCompleted: the XR is Ready only when every model is on disk.
func allCompleted(models []decide.ModelStatus) bool {
	for _, m := range models {
		if m.State != decide.StateCompleted {
			return false
		}
	}
	return true
}

func anyUnsettled(models []decide.ModelStatus) bool {
	for _, m := range models {
		if !m.State.Terminal() {
			return true
		}
	}
	return false
}
