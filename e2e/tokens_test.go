package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

// tokens holds every token value the tests put in a Secret. After the suite no component's
// log may hold one: the function reads the token Secret on every call, yet composes only a
// secretKeyRef and hashes only the value's SHA-256, and its results (which Crossplane logs
// as events) name Secret and key, never the value.
var tokens = struct {
	sync.Mutex
	values map[string]bool
}{values: map[string]bool{}}

// token records a token value a test is about to store, and returns it.
func token(v string) string {
	tokens.Lock()
	defer tokens.Unlock()
	tokens.values[v] = true
	return v
}

// tokensInLogs lists, for every log in dir, the recorded tokens it holds.
func tokensInLogs(dir string) ([]string, error) {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	tokens.Lock()
	defer tokens.Unlock()
	var found []string
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			return nil, err
		}
		for v := range tokens.values {
			if bytes.Contains(b, []byte(v)) {
				found = append(found, fmt.Sprintf("%s holds the token %q", filepath.Base(l), v))
			}
		}
	}
	sort.Strings(found)
	return found, nil
}

// TestTokensInLogsFindsThem shows the check TestMain runs after the suite can fail.
func TestTokensInLogsFindsThem(t *testing.T) {
	dir := t.TempDir()
	v := token("hf_e2e_token_planted_in_a_log")
	if err := os.WriteFile(filepath.Join(dir, "function.log"), []byte("a line\nleaked: "+v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	found, err := tokensInLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("function.log holds the token %q", v); len(found) != 1 || found[0] != want {
		t.Errorf("tokensInLogs = %q, want [%q]", found, want)
	}
}
