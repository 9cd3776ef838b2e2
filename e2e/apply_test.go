package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// readObjects decodes every document of a YAML file (kubectl's multi-document format).
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) != 0 { // an empty document, such as a leading ---
			objs = append(objs, u)
		}
	}
}

// applier server-side-applies objects of any kind, kubectl apply --server-side style.
type applier struct {
	dynamic dynamic.Interface

	mu     sync.Mutex
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(cp *controlPlane) (*applier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cp.admin)
	if err != nil {
		return nil, err
	}
	return &applier{
		dynamic: cp.dynamic,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
	}, nil
}

// resource returns the client for a kind. Kinds appear while the tests run (an XRD's CRD),
// so a kind the cached discovery does not know makes it look again once.
func (a *applier) resource(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, error) {
	a.mu.Lock()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dynamic.Resource(m.Resource).Namespace(namespace), nil
	}
	return a.dynamic.Resource(m.Resource), nil
}

// apply creates or updates obj with server-side apply as field manager "e2e".
func (a *applier) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	r, err := a.resource(obj.GroupVersionKind(), obj.GetNamespace())
	if err != nil {
		return err
	}
	if _, err := r.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "e2e", Force: true}); err != nil {
		return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// get reads the current state of obj (by kind, namespace and name).
func (a *applier) get(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	r, err := a.resource(obj.GroupVersionKind(), obj.GetNamespace())
	if err != nil {
		return nil, err
	}
	return r.Get(ctx, obj.GetName(), metav1.GetOptions{})
}

// delete deletes obj as kubectl delete does (background propagation: the garbage
// collector removes its dependents after it is gone).
func (a *applier) delete(ctx context.Context, obj *unstructured.Unstructured) error {
	r, err := a.resource(obj.GroupVersionKind(), obj.GetNamespace())
	if err != nil {
		return err
	}
	return r.Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
}

// applyFile applies every object in a YAML file, in order.
func (a *applier) applyFile(ctx context.Context, path string) error {
	objs, err := readObjects(path)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := a.apply(ctx, o); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// updateStatus writes obj's status as it is (the status subresource): a conflict, when
// the object changed since obj was read, is returned.
func (a *applier) updateStatus(ctx context.Context, obj *unstructured.Unstructured) error {
	r, err := a.resource(obj.GroupVersionKind(), obj.GetNamespace())
	if err != nil {
		return err
	}
	_, err = r.UpdateStatus(ctx, obj, metav1.UpdateOptions{FieldManager: "e2e"})
	return err
}
