package main

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/request"
	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/response"
)

// The edge out: the decisions become the response. The desired Jobs, PVC and
// ConfigMaps join whatever earlier steps of the pipeline desired, and the
// status the function owns joins the desired XR's.

func respond(rsp *fnv1.RunFunctionResponse, req *fnv1.RunFunctionRequest, desired map[string]*resource.DesiredComposed, models []modelStatus, pvcUID string) error {
	named := make(map[resource.Name]*resource.DesiredComposed, len(desired))
	for k, d := range desired {
		named[resource.Name(k)] = d
	}
	if err := response.SetDesiredComposedResources(rsp, named); err != nil {
		return err
	}

	xr, err := request.GetDesiredCompositeResource(req)
	if err != nil {
		return err
	}
	if xr.Resource.Object == nil {
		xr.Resource.Object = map[string]any{}
	}
	st, _, _ := unstructured.NestedMap(xr.Resource.Object, "status")
	if st == nil {
		st = map[string]any{}
	}
	for k, v := range statusValue(models, pvcUID) {
		st[k] = v
	}
	xr.Resource.Object["status"] = st
	// The XR is Ready only when every model is on disk.
	xr.Ready = resource.ReadyTrue
	for _, m := range models {
		if m.state != stateCompleted {
			xr.Ready = resource.ReadyFalse
			break
		}
	}
	return response.SetDesiredCompositeResource(rsp, xr)
}
