package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/crossplane/function-sdk-go/errors"
	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/response"

	"github.com/hfops/function-hf-download/script"
)

// How soon Crossplane should call again. While a download runs, status
// follows within 20 s even where realtime compositions are off (hf-operator
// requeued every 20 s); a missing token is checked again sooner.
const (
	ttlSettled      = response.DefaultTTL
	ttlDownloading  = 20 * time.Second
	ttlTokenMissing = 10 * time.Second
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
	// zero means crossplaneMaxResponseBytes.
	maxResponseBytes int
}

// RunFunction runs the Function. The user's mistakes are reported in the
// response (Fatal, Warning, conditions); the error return is for the
// transport only.
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
	xr := req.GetObserved().GetComposite().GetResource()
	xrName := getString(xr, "metadata", "name")
	log := f.log.WithValues("xr-kind", getString(xr, "kind"), "xr-name", xrName)

	in, err := decodeInput(req.GetInput())
	if err != nil {
		response.Fatal(rsp, errors.Wrap(err, "invalid function input"))
		return rsp, nil
	}
	xrNamespace := getString(xr, "metadata", "namespace")
	plat, errs := resolvePlatform(in)
	env, envErrs := resolveEnvelope(in, xrNamespace != "")
	if errs = append(errs, envErrs...); len(errs) > 0 {
		response.Fatal(rsp, errors.Wrap(errs.ToAggregate(), "invalid function input"))
		return rsp, nil
	}

	spec, errs := parseSpec(xr)
	errs = append(errs, notCoveredBy(errs, validateSpec(&spec))...)
	if len(errs) > 0 {
		log.Debug("Spec is unusable", "errors", len(errs))
		response.Fatal(rsp, errors.Wrap(errs.ToAggregate(), "invalid ModelDownload spec"))
		return rsp, nil
	}

	// A claim's Jobs, token and PVC live in the claim's namespace, under
	// the claim's name, as they would for a namespaced XR.
	namespace, base := xrNamespace, xrName
	if namespace == "" {
		namespace = getString(xr, "metadata", "labels", claimNamespaceLabel)
		base = orDefault(getString(xr, "metadata", "labels", claimNameLabel), xrName)
	}
	if namespace == "" {
		response.Fatal(rsp, errors.Errorf("cannot tell where the Jobs go: the XR %q has no namespace and no %s label", xrName, claimNamespaceLabel))
		return rsp, nil
	}

	b := newJobBuilder(base, namespace, &spec, plat)
	rsp.Requirements = requirements(namespace, b.parentLabel, &spec, needsNamespaceOwner(&spec, env))
	if !resolved(req, rsp.GetRequirements()) {
		// Crossplane fetches what was asked for and calls again at once.
		log.Debug("Waiting for Crossplane to resolve required resources")
		return rsp, nil
	}

	token := resolveToken(req, namespace, spec.Token)
	c := &composer{
		builder:   b,
		envelope:  env,
		token:     token,
		observed:  req.GetObserved().GetResources(),
		recorded:  recordedStatus(xr),
		summaries: podSummaries(req),
		xrDigest:  hashXR(&spec, b.cpu, b.memory, env.apiVersion),
		desired:   map[string]*fnv1.Resource{},
		sizes:     resourceSizes{},
	}
	if spec.Storage != nil {
		c.composePVC(namespaceUID(req))
	}
	models := c.compose()

	setDesired(rsp, c.desired, models)
	report(rsp, &spec, models, token)

	switch {
	case !token.usable():
		rsp.Meta.Ttl = durationpb.New(ttlTokenMissing)
	case anyUnsettled(models):
		rsp.Meta.Ttl = durationpb.New(ttlDownloading)
	}
	limit := f.maxResponseBytes
	if limit == 0 {
		limit = crossplaneMaxResponseBytes
	}
	if err := checkResponseSize(rsp, len(models), limit, c.sizes); err != nil {
		// Never a desired state with some Jobs missing: Crossplane would
		// delete those.
		log.Info("Response is over Crossplane's gRPC message limit", "models", len(models))
		return oversizeResponse(req, err), nil
	}
	log.Debug("Composed download Jobs", "models", len(models), "jobs", len(c.desired))
	return rsp, nil
}

// composer decides, model by model, which Job is desired and what the model's
// status is.
type composer struct {
	builder   *jobBuilder
	envelope  envelope
	token     tokenState
	observed  map[string]*fnv1.Resource
	recorded  map[string]modelStatus
	summaries map[string]script.Summary
	xrDigest  []byte

	desired map[string]*fnv1.Resource
	sizes   resourceSizes
	// waitingFor says why no Job may start yet (the PVC does not exist).
	waitingFor string
}

func (c *composer) compose() []modelStatus {
	spec := c.builder.spec
	out := make([]modelStatus, 0, len(spec.Models))
	for i := range spec.Models {
		m := &spec.Models[i]
		if len(m.errs) > 0 {
			out = append(out, modelStatus{Name: m.Name, Phase: phaseFailed, Message: joinErrors(m.errs)})
			continue
		}
		h := hashModel(m, c.xrDigest, c.builder.platform.digest, c.token.digest)
		if !c.token.usable() || c.waitingFor != "" {
			out = append(out, c.keepWhileTokenMissing(m, h))
			continue
		}
		out = append(out, c.composeModel(m, h))
	}
	return out
}

func (c *composer) composeModel(m *modelSpec, h modelHashes) modelStatus {
	key := resourceKey(m.Name, h.spec)
	st := modelStatus{
		Name:    m.Name,
		JobName: jobName(c.builder.nameBase, m.Name, h.spec),
		Hash:    h.spec,
		Path:    c.builder.localDir(m),
		Phase:   phasePending,
	}
	rec, hasRec := c.recorded[m.Name]
	sameSpec := hasRec && rec.Hash == h.spec
	observed, exists := c.observed[key]
	deleting := exists && beingDeleted(observed.GetResource())
	switch {
	case sameSpec && rec.Phase == phaseCompleted && (!exists || deleting || c.envelope.object):
		// The Job's TTL removed it after success. Status is the memory:
		// the model stays Completed and no Job comes back. In Object mode
		// provider-kubernetes would re-create a deleted Job, so the Object
		// goes as soon as the completion is recorded; it was already told
		// to orphan its Job (see desireJob), which its TTL then removes.
		st.Phase = phaseCompleted
		st.Message = rec.Message
		st.summary = rec.summary
		return st
	case exists:
		st.Phase, st.Message = jobPhase(unwrap(observed.GetResource()))
	}
	c.desireJob(key, c.builder.build(m, st.JobName, h), st.Phase)
	if deleting && (st.Phase == phasePending || st.Phase == phaseRunning) {
		// Not desired again (see desire): a successor starts once it is gone.
		st.Phase, st.Message = phasePending, fmt.Sprintf("waiting for Job %q, which is being deleted, to go", st.JobName)
	}
	if st.Phase == phaseCompleted {
		if s, ok := c.summaries[st.JobName]; ok {
			st.summary = &s
		} else if sameSpec {
			// The pod is gone; what it reported stays recorded.
			st.summary = rec.summary
		}
	}
	return st
}

// keepWhileTokenMissing starts no new Job (the token is unreadable, or the
// PVC does not exist yet) but keeps the ones that exist: a Job built from the
// current spec is rebuilt as it was (its hash comes from the observed Job),
// and a Job of an older spec is kept as observed until its successor can
// start.
func (c *composer) keepWhileTokenMissing(m *modelSpec, h modelHashes) modelStatus {
	why := c.waitingFor
	if !c.token.usable() {
		why = "waiting for the Hugging Face token: " + c.token.problem
	}
	st := modelStatus{Name: m.Name, Path: c.builder.localDir(m), Phase: phasePending, Message: why}
	current := false
	for _, key := range c.observedKeys() {
		composed := c.observed[key].GetResource()
		// Only a Job of this function (bare or in an Object) is kept; what
		// another step composed is not touched, whatever its annotations.
		if k := getString(composed, "kind"); k != "Job" && k != "Object" ||
			getString(composed, "metadata", "labels", labelApp) != appName ||
			getString(composed, "metadata", "annotations", annotationModel) != m.Name {
			continue
		}
		// A spec-hash label edited by hand cannot name a Job: such a Job is
		// kept as it is, as one of an older spec.
		if getString(composed, "metadata", "annotations", annotationConfigHash) != h.config ||
			!isSpecHash(getString(composed, "metadata", "labels", labelSpecHash)) {
			c.desire(key, keepAsObserved(composed), phasePending)
			continue
		}
		if current {
			continue
		}
		current = true
		kept := h
		kept.spec = getString(composed, "metadata", "labels", labelSpecHash)
		st.JobName, st.Hash = jobName(c.builder.nameBase, m.Name, kept.spec), kept.spec
		st.Phase, st.Message = jobPhase(unwrap(composed))
		c.desireJob(key, c.builder.build(m, st.JobName, kept), st.Phase)
		if s, ok := c.summaries[st.JobName]; ok && st.Phase == phaseCompleted {
			st.summary = &s
		}
	}
	if rec, ok := c.recorded[m.Name]; !current && ok && rec.Phase == phaseCompleted {
		// What is on disk has not changed; without the token the function
		// cannot tell whether the spec hash still matches, so it keeps what
		// it recorded and says why nothing new starts.
		rec.Message = st.Message
		return rec
	}
	return st
}

// isSpecHash reports whether s is a spec hash as jobName needs it.
func isSpecHash(s string) bool {
	return len(s) == specHashLen && strings.IndexFunc(s, notHex) < 0
}

// observedKeys lists the observed resources in a stable order, so the
// response does not depend on map iteration.
func (c *composer) observedKeys() []string {
	keys := make([]string, 0, len(c.observed))
	for k := range c.observed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// desireJob composes a Job, in its envelope. It is ready when it completed.
// The Object of a completed Job orphans it: removing the Object then leaves
// the Job to its own TTL, instead of deleting (or re-creating) it.
func (c *composer) desireJob(key string, job *structpb.Struct, phase string) {
	c.desire(key, c.envelope.wrap(job, jobReadyQuery, phase == phaseCompleted), phase)
}

// desire composes a Job (or what carries it) under key, unless the one
// observed there is being deleted: the TTL controller deletes in the
// foreground, so a finished Job lingers until its pods are gone, and
// applying it as it vanishes would create it again.
func (c *composer) desire(key string, composed *structpb.Struct, phase string) {
	if o, ok := c.observed[key]; ok && beingDeleted(o.GetResource()) {
		return
	}
	ready := fnv1.Ready_READY_FALSE
	if phase == phaseCompleted {
		ready = fnv1.Ready_READY_TRUE
	}
	c.add(key, &fnv1.Resource{Resource: composed, Ready: ready})
}

// add puts a composed resource in the desired state and measures it while
// it is fresh (see resourceSizes).
func (c *composer) add(key string, r *fnv1.Resource) {
	c.desired[key] = r
	c.sizes[r] = resourceSize(r)
}

// composePVC composes the PVC of spec.storage. Until it exists no Job may
// mount it, so none starts.
func (c *composer) composePVC(nsUID string) {
	st := c.builder.spec.Storage
	pvc := c.envelope.wrap(c.builder.buildPVC(nsUID), "", st.DeletionPolicy == deletionOrphan)
	ready := fnv1.Ready_READY_FALSE
	if o, ok := c.observed[pvcKey]; ok && unwrap(o.GetResource()) != nil {
		ready = fnv1.Ready_READY_TRUE
	} else {
		c.waitingFor = fmt.Sprintf("waiting for the PersistentVolumeClaim %q to be created", c.builder.spec.StoragePVC)
	}
	c.add(pvcKey, &fnv1.Resource{Resource: pvc, Ready: ready})
}

// keepAsObserved re-applies exactly what exists, so server-side apply
// changes nothing on an immutable Job (or on the Object that carries it).
func keepAsObserved(job *structpb.Struct) *structpb.Struct {
	md := job.GetFields()["metadata"].GetStructValue()
	keep := fields{}
	for _, k := range []string{"name", "namespace", "labels", "annotations"} {
		if v, ok := md.GetFields()[k]; ok {
			keep[k] = v
		}
	}
	return &structpb.Struct{Fields: fields{
		"apiVersion": job.GetFields()["apiVersion"],
		"kind":       job.GetFields()["kind"],
		"metadata":   object(keep),
		"spec":       job.GetFields()["spec"],
	}}
}

// setDesired adds the Jobs and the XR's status to the desired state, keeping
// whatever earlier steps of the pipeline put there.
func setDesired(rsp *fnv1.RunFunctionResponse, jobs map[string]*fnv1.Resource, models []modelStatus) {
	if rsp.GetDesired() == nil {
		rsp.Desired = &fnv1.State{}
	}
	if rsp.Desired.GetResources() == nil {
		rsp.Desired.Resources = make(map[string]*fnv1.Resource, len(jobs))
	}
	for k, r := range jobs {
		rsp.Desired.Resources[k] = r
	}

	if rsp.Desired.GetComposite() == nil {
		rsp.Desired.Composite = &fnv1.Resource{}
	}
	xr := rsp.Desired.Composite
	if xr.GetResource() == nil {
		xr.Resource = &structpb.Struct{Fields: fields{}}
	}
	if xr.Resource.Fields == nil {
		xr.Resource.Fields = fields{}
	}
	st := xr.Resource.Fields["status"].GetStructValue()
	if st == nil {
		st = &structpb.Struct{Fields: fields{}}
		xr.Resource.Fields["status"] = structpb.NewStructValue(st)
	}
	for k, v := range statusValue(models) {
		st.Fields[k] = v
	}

	// The XR is Ready only when every model is on disk.
	xr.Ready = fnv1.Ready_READY_TRUE
	for _, m := range models {
		if m.Phase != phaseCompleted {
			xr.Ready = fnv1.Ready_READY_FALSE
			break
		}
	}
}

// report adds the conditions and warnings a user reads on the XR.
func report(rsp *fnv1.RunFunctionResponse, spec *xrSpec, models []modelStatus, token tokenState) {
	s, reason, msg := summary(models)
	condition(rsp, conditionDownloaded, s, reason, msg)

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
	} else {
		condition(rsp, conditionModelsValid, fnv1.Status_STATUS_CONDITION_TRUE, "AllModelsValid", "")
	}

	if spec.Token == nil {
		return
	}
	if !token.usable() {
		response.Warning(rsp, errors.New("no new download Jobs start until the token is readable: "+token.problem)).TargetCompositeAndClaim()
		condition(rsp, conditionTokenAvailable, fnv1.Status_STATUS_CONDITION_FALSE, token.reason, token.problem)
		return
	}
	condition(rsp, conditionTokenAvailable, fnv1.Status_STATUS_CONDITION_TRUE, token.reason,
		fmt.Sprintf("Secret %q key %q holds a token", spec.Token.Name, spec.Token.Key))
}

func condition(rsp *fnv1.RunFunctionResponse, typ string, s fnv1.Status, reason, msg string) {
	c := &fnv1.Condition{Type: typ, Status: s, Reason: reason, Target: fnv1.Target_TARGET_COMPOSITE_AND_CLAIM.Enum()}
	if msg != "" {
		c.Message = &msg
	}
	rsp.Conditions = append(rsp.Conditions, c)
}

func anyUnsettled(models []modelStatus) bool {
	for _, m := range models {
		if m.Phase == phasePending || m.Phase == phaseRunning {
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
