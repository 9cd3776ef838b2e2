package main

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestStagesImportDownward: a call goes read, decide, build, respond, with
// names, hashes and the schema decoder beneath every stage, and Go's imports
// keep it that way. Each package may import only what this table allows
// below it; main wires them. A new import of a stage above (build from
// decide, say, or main's types from anywhere) fails here, not in review.
func TestStagesImportDownward(t *testing.T) {
	const module = "github.com/hfops/function-hf-download/"
	api := []string{"apis/v1alpha1", "input/v1beta1", "script"}
	allowed := map[string][]string{
		"internal/naming":  {"apis/v1alpha1"},
		"internal/decode":  {"apis/v1alpha1"},
		"internal/read":    append(slices.Clone(api), "internal/naming", "internal/decode"),
		"internal/decide":  append(slices.Clone(api), "internal/naming", "internal/decode", "internal/read"),
		"internal/build":   append(slices.Clone(api), "internal/naming", "internal/read"),
		"internal/respond": nil,
	}
	dirs, err := filepath.Glob("internal/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, ok := allowed[filepath.ToSlash(d)]; !ok {
			t.Errorf("package %s has no place in the stages: add it to this table", d)
		}
	}
	for pkg, may := range allowed {
		files, err := filepath.Glob(filepath.Join(pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("package %s: no Go files (%v)", pkg, err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				own, ok := strings.CutPrefix(path, module)
				if ok && !slices.Contains(may, own) {
					t.Errorf("%s imports %s: %s may import only %v", file, own, pkg, may)
				}
			}
		}
	}
}
