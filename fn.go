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
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/crossplane/function-sdk-go/errors"
	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/response"

	"github.com/hfops/function-hf-download/internal/naming"
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

// Labels Crossplane sets on a cluster-scoped XR bound to a claim.
const (
	claimNamespaceLabel = "crossplane.io/claim-namespace"
	claimNameLabel      = "crossplane.io/claim-name"
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
	o := observe(req)
	log := f.log.WithValues("xr-kind", o.xr.kind, "xr-name", o.xr.name)

	in, err := decodeInput(req.GetInput())
	if err != nil {
		response.Fatal(rsp, errors.Wrap(err, "invalid function input"))
		return rsp, nil
	}
	plat, errs := resolvePlatform(in, defaultImage())
	env, envErrs := resolveEnvelope(in, o.xr.namespace != "")
	if errs = append(errs, envErrs...); len(errs) > 0 {
		response.Fatal(rsp, errors.Wrap(errs.ToAggregate(), "invalid function input"))
		return rsp, nil
	}
	spec, errs := parseSpec(req.GetObserved().GetComposite().GetResource())
	errs = append(errs, notCoveredBy(errs, validateSpec(&spec))...)
	if len(errs) > 0 {
		log.Debug("Spec is unusable", "errors", len(errs))
		response.Fatal(rsp, errors.Wrap(errs.ToAggregate(), "invalid ModelDownload spec"))
		return rsp, nil
	}

	// A claim's Jobs, token and PVC live in the claim's namespace, under
	// the claim's name, as they would for a namespaced XR.
	namespace, base := o.xr.namespace, o.xr.name
	if namespace == "" {
		namespace = o.xr.labels[claimNamespaceLabel]
		base = orDefault(o.xr.labels[claimNameLabel], o.xr.name)
	}
	if namespace == "" {
		response.Fatal(rsp, errors.Errorf("cannot tell where the Jobs go: the XR %q has no namespace and no %s label", o.xr.name, claimNamespaceLabel))
		return rsp, nil
	}

	b := newJobBuilder(base, namespace, &spec, plat)
	rsp.Requirements = requirements(namespace, b.parentLabel, &spec, needsNamespaceOwner(&spec, env))
	rsp.Requirements.Resources[requirementPeers] = peerRequirement(o.xr, namespace)
	if plat.MaxActivePerNamespace > 0 {
		rsp.Requirements.Resources[requirementNamespaceJobs] = namespaceJobsRequirement(namespace)
	}
	d := dialectOf(req)
	required := d.answered(req, rsp.GetRequirements())
	complete := resolved(required, rsp.GetRequirements())
	d.ask(rsp.GetRequirements())
	if !complete {
		// Crossplane fetches what was asked for and calls again at once.
		log.Debug("Waiting for Crossplane to resolve required resources")
		return rsp, nil
	}
	o.readRequired(required)

	token := resolveToken(o.secret, namespace, spec.HFTokenRef)
	storage := resolveStorage(o.pvc, namespace, &spec)
	d.explain(&token, &storage)
	if storage.colocate {
		b.colocate()
	}
	who := naming.Owner{Namespace: namespace, Name: base, XRName: o.xr.name, XRUID: o.xr.uid, PVCUID: storage.uid}
	b.scriptMap = scriptName(who, spec.StoragePVC)
	b.progressMap = progressName(who)
	c := &composer{
		callFacts: callFacts{
			observation: &o,
			builder:     b,
			token:       token,
			storage:     storage,
			xrDigest:    naming.HashXR(&spec.ModelDownloadSpec, who, b.cpu, b.memory, env.apiVersion),
			retry:       o.xr.annotations[annotationRetry],
			dirs:        readPeers(o.peers, o.xr, spec.StoragePVC),
			self:        dirUser{name: base, created: o.xr.created, xrName: o.xr.name},
			objectMode:  env.object,
		},
		envelope: env,
		queue:    newDownloadQueue(spec.StoragePVC, storage.oneAtATime, spec.Settings.MaxParallel),
		desired:  map[string]*resource.DesiredComposed{},
	}
	if plat.MaxActivePerNamespace > 0 {
		c.queue.namespace = share(int(plat.MaxActivePerNamespace), readNamespaceJobs(required[requirementNamespaceJobs]),
			o.peers, o.xr, b.parentLabel)
	}
	if spec.Storage != nil {
		c.composePVC()
	}
	c.composeScripts()
	c.composeProgress()
	models := c.compose()

	if err := respond.Respond(rsp, req, c.desired, c.builder.template, statusValue(models, storage.uid), allCompleted(models)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	report(rsp, base, &spec, models, token, storage, c.conflict)
	switch {
	case !token.usable() || !storage.ready() || slices.ContainsFunc(models, isQueued):
		// A queued model may start as soon as a slot frees, in another
		// ModelDownload too, whose Jobs only Crossplane v2.4 and later watch
		// for this one (as required resources).
		rsp.Meta.Ttl = durationpb.New(cmp.Or(f.ttlWaiting, ttlWaiting))
	case anyUnsettled(models):
		rsp.Meta.Ttl = durationpb.New(cmp.Or(f.ttlDownloading, ttlDownloading))
	}
	limit := f.maxResponseBytes
	if limit == 0 {
		limit = respond.CrossplaneMaxResponseBytes
	}
	if err := respond.CheckSize(rsp, len(models), limit); err != nil {
		// Never a desired state with some Jobs missing: Crossplane would
		// delete those.
		log.Info("Response is over Crossplane's gRPC message limit", "models", len(models))
		return respond.Oversize(req, err), nil
	}
	log.Debug("Composed download Jobs", "models", len(models), "resources", len(c.desired))
	return rsp, nil
}

// composePVC composes the PVC of spec.storage. Until it exists no Job may
// mount it, so none starts (see resolveStorage).
func (c *composer) composePVC() {
	st := c.builder.spec.Storage
	policy := manage
	if st.DeletionPolicy == deletionOrphan {
		policy = keepOnDelete
	}
	ready := resource.ReadyFalse
	if c.pvcObserved && c.storage.ready() {
		ready = resource.ReadyTrue
	}
	c.desire(pvcKey, c.envelope.wrap(asUnstructured(c.builder.buildPVC(c.namespace)), "", policy), ready)
}

// composeScripts composes the ConfigMap of the current script, and keeps
// older ones while a Job observed still mounts them.
func (c *composer) composeScripts() {
	name := c.builder.scriptMap
	key := scriptKey(name)
	c.desire(key, c.envelope.wrap(asUnstructured(c.builder.buildScriptMap()), "", manage), resource.ReadyTrue)
	s, ok := c.scripts[key]
	c.scriptReady = ok && s.exists && s.name == name && !s.deleting
	mounted := map[string]bool{}
	for _, js := range c.jobs {
		for _, j := range js {
			mounted[j.scriptMap()] = true
		}
	}
	for k, s := range c.scripts {
		if k != key && mounted[s.name] {
			c.desire(k, c.envelope.wrap(keepAsObserved(s.manifest), "", manage), resource.ReadyTrue)
		}
	}
}

// report adds the conditions and warnings a user reads on the XR.
// name is the ModelDownload as its user knows it (a claim's name for a claim's XR).
func report(rsp *fnv1.RunFunctionResponse, name string, spec *xrSpec, models []modelStatus, token tokenState, storage storageState, conflicts []string) {
	s, reason, msg := summary(models)
	condition(rsp, conditionDownloaded, s, reason, msg)
	for _, m := range models {
		if m.state == stateFailed {
			response.Warning(rsp, errors.Errorf("model %s failed: %s (to try again as it is: kubectl annotate --overwrite modeldownload %s %s=<a new value>)",
				m.Name, orDefault(m.Message, "no reason given"), name, annotationRetry)).TargetCompositeAndClaim()
		}
	}
	reportModels(rsp, spec)
	reportToken(rsp, spec, token)
	reportStorage(rsp, spec, storage)
	reportConflicts(rsp, conflicts)
}

func reportModels(rsp *fnv1.RunFunctionResponse, spec *xrSpec) {
	var invalid []string
	for i := range spec.Models {
		for _, e := range spec.Models[i].errs {
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

func reportToken(rsp *fnv1.RunFunctionResponse, spec *xrSpec, token tokenState) {
	switch {
	case spec.HFTokenRef == nil:
	case !token.usable():
		response.Warning(rsp, errors.New("no new download Jobs start until the token is readable: "+token.problem)).TargetCompositeAndClaim()
		condition(rsp, conditionTokenAvailable, fnv1.Status_STATUS_CONDITION_FALSE, token.reason, token.problem)
	default:
		condition(rsp, conditionTokenAvailable, fnv1.Status_STATUS_CONDITION_TRUE, token.reason,
			fmt.Sprintf("Secret %q key %q holds a token", spec.HFTokenRef.Name, spec.HFTokenRef.Key))
	}
}

func reportStorage(rsp *fnv1.RunFunctionResponse, spec *xrSpec, storage storageState) {
	if storage.ready() {
		condition(rsp, conditionStorageReady, fnv1.Status_STATUS_CONDITION_TRUE, storage.reason, storage.message(spec.StoragePVC))
		return
	}
	response.Warning(rsp, errors.New(storage.problem)).TargetCompositeAndClaim()
	condition(rsp, conditionStorageReady, fnv1.Status_STATUS_CONDITION_FALSE, storage.reason, storage.problem)
}

func reportConflicts(rsp *fnv1.RunFunctionResponse, conflicts []string) {
	if len(conflicts) == 0 {
		condition(rsp, conditionConflict, fnv1.Status_STATUS_CONDITION_FALSE, reasonNoConflict, "")
		return
	}
	for _, n := range conflicts {
		response.Warning(rsp, errors.New("directory conflict: "+n)).TargetCompositeAndClaim()
	}
	condition(rsp, conditionConflict, fnv1.Status_STATUS_CONDITION_TRUE, reasonConflicting, strings.Join(conflicts, "; "))
}

func condition(rsp *fnv1.RunFunctionResponse, typ string, s fnv1.Status, reason, msg string) {
	c := &fnv1.Condition{Type: typ, Status: s, Reason: reason, Target: fnv1.Target_TARGET_COMPOSITE_AND_CLAIM.Enum()}
	if msg != "" {
		c.Message = &msg
	}
	rsp.Conditions = append(rsp.Conditions, c)
}

// allCompleted: the XR is Ready only when every model is on disk.
func allCompleted(models []modelStatus) bool {
	for _, m := range models {
		if m.state != stateCompleted {
			return false
		}
	}
	return true
}

func anyUnsettled(models []modelStatus) bool {
	for _, m := range models {
		if !m.state.terminal() {
			return true
		}
	}
	return false
}

func joinErrors(errs field.ErrorList) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}
