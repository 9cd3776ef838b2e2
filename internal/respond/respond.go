// Package respond makes the response: the desired resources, converted to
// protobuf once per shared map (share.go), the status the function owns
// joined to the desired XR's, and the check that the whole reaches
// Crossplane (limits.go). It is the last stage: it knows the SDK's types and
// nothing of how the function decided.
package respond

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/crossplane/function-sdk-go/errors"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/resource/composite"
	"github.com/crossplane/function-sdk-go/response"
)

// Respond writes the decisions into the response: the desired Jobs, PVC and
// ConfigMaps join whatever earlier steps of the pipeline desired (shared is
// what the Jobs share: their template), and status, the part of the XR's
// status the function owns, joins the desired XR's, which is Ready when
// ready says so. It reads the desired XR from rsp (response.To copied it
// from the request), so a caller may let the request go before it responds.
func Respond(rsp *fnv1.RunFunctionResponse, desired map[string]*resource.DesiredComposed, shared any,
	status map[string]any, ready bool) error {
	if err := setDesiredComposed(rsp, desired, shared); err != nil {
		return err
	}

	xr := &resource.Composite{Resource: composite.New(), ConnectionDetails: rsp.GetDesired().GetComposite().GetConnectionDetails()}
	if xr.ConnectionDetails == nil {
		xr.ConnectionDetails = resource.ConnectionDetails{}
	}
	if err := resource.AsObject(rsp.GetDesired().GetComposite().GetResource(), xr.Resource); err != nil {
		return err
	}
	if xr.Resource.Object == nil {
		xr.Resource.Object = map[string]any{}
	}
	st, _, _ := unstructured.NestedMap(xr.Resource.Object, "status")
	if st == nil {
		st = map[string]any{}
	}
	for k, v := range status {
		st[k] = v
	}
	xr.Resource.Object["status"] = st
	xr.Ready = resource.ReadyFalse
	if ready {
		xr.Ready = resource.ReadyTrue
	}
	return response.SetDesiredCompositeResource(rsp, xr)
}

// setDesiredComposed is the SDK's response.SetDesiredComposedResources,
// converting what the Jobs share (shared, the Jobs' template) once.
func setDesiredComposed(rsp *fnv1.RunFunctionResponse, desired map[string]*resource.DesiredComposed, shared any) error {
	if rsp.GetDesired() == nil {
		rsp.Desired = &fnv1.State{}
	}
	if rsp.GetDesired().GetResources() == nil {
		rsp.Desired.Resources = make(map[string]*fnv1.Resource, len(desired))
	}
	conv := NewSharingConverter(shared)
	for k, d := range desired {
		s, err := conv.StructOf(d.Resource.UnstructuredContent())
		if err != nil {
			return errors.Wrapf(err, "cannot convert the desired resource %q", k)
		}
		r := &fnv1.Resource{Resource: s, Ready: fnv1.Ready_READY_UNSPECIFIED}
		switch d.Ready {
		case resource.ReadyFalse:
			r.Ready = fnv1.Ready_READY_FALSE
		case resource.ReadyTrue:
			r.Ready = fnv1.Ready_READY_TRUE
		}
		rsp.Desired.Resources[k] = r
	}
	return nil
}
