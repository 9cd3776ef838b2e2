package script

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The tests here tell failures with a stub hf that prints what the real one
// would (realhf_test.go runs the real one): output that a real run cannot
// produce on demand, such as a full disk, or that tests the script's own
// handling of odd text.

// TestFailureReasonsFromStub: each stub stderr, and the one line of reason
// the script makes of it.
func TestFailureReasonsFromStub(t *testing.T) {
	const (
		red   = "\x1b[1m\x1b[31m"
		gray  = "\x1b[90m"
		reset = "\x1b[0m"
		hint  = gray + "Hint: set HF_DEBUG=1 as environment variable for full traceback." + reset + "\n"
	)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		stderr string
		exit   string
		want   string // after "download of org/name@main failed: ", unless env changes that
	}{{
		// A stub: a real hf cannot be made to fill a disk on demand. This is
		// the traceback an OSError leaves (hf has no message of its own for it).
		name: "disk full",
		stderr: "Fetching 2 files:   0%|          | 0/2 [00:00<?, ?it/s]\n" +
			"Traceback (most recent call last):\n  File \"/usr/lib/python3/shutil.py\", line 200, in copyfileobj\n" +
			"OSError: [Errno 28] No space left on device\n",
		exit: "1",
		want: "disk full: no space left on device in {dir}",
	}, {
		name:   "disk full from hf_xet",
		stderr: red + "Error: Data processing error: I/O error: No space left on device (os error 28)" + reset + "\n" + hint,
		exit:   "1",
		want:   "disk full: no space left on device in {dir}",
	}, {
		name:   "gated, coloured",
		stderr: red + "Error: Access denied. Model 'org/name' requires approval." + reset + "\n" + hint,
		exit:   "1",
		want:   "access denied (gated or private repo; check the token and accept the licence at https://huggingface.co/org/name)",
	}, {
		name:   "gated dataset on a mirror",
		env:    map[string]string{EnvRepoType: "dataset", "HF_ENDPOINT": "https://hub.example.com/"},
		stderr: red + "Error: Access denied. Dataset 'org/name' requires approval." + reset + "\n" + hint,
		exit:   "1",
		want:   "access denied (gated or private repo; check the token and accept the licence at https://hub.example.com/datasets/org/name)",
	}, {
		name: "not found",
		stderr: red + "Error: Model 'org/name' not found.\nIf the repo is private, make sure you are authenticated and your token has the required permissions.\n" +
			"If the repo does not exist, create it with: hf repos create org/name" + reset + "\n" + hint,
		exit: "1",
		want: "repository not found (or private and the token cannot read it; check the token and the name at https://huggingface.co/org/name)",
	}, {
		// Control characters in a value become spaces. (The stub's record
		// cannot hold a newline: TestReasonIsOneLine has one.)
		name:   "revision not found, hostile revision",
		env:    map[string]string{EnvRevision: "v1\tnext\rline\x1b[31m"},
		stderr: red + "Error: Revision not found in model 'org/name'." + reset + "\n" + hint,
		exit:   "1",
		want:   "!download of org/name@v1 next line [31m failed: revision v1 next line [31m not found in https://huggingface.co/org/name",
	}, {
		name:   "401 status",
		stderr: red + "Error: 401 Client Error: Unauthorized for url: https://huggingface.co/api/models/org/name/revision/main" + reset + "\n" + hint,
		exit:   "1",
		want:   "the token was refused (401); check the token",
	}, {
		name:   "401 only in the URL",
		env:    map[string]string{EnvRepoID: "org/x401"},
		stderr: red + "Error: Local entry not found. Server error '502 Bad Gateway' for url 'https://huggingface.co/api/models/org/x401/revision/main'" + reset + "\n" + hint,
		exit:   "1",
		want:   "!download of org/x401@main failed: Local entry not found. Server error '502 Bad Gateway' for url 'https://huggingface.co/api/models/org/x401/revision/main'",
	}, {
		name: "first Error line after progress redrawn with CR",
		stderr: "\rFetching 3 files:   0%|          | 0/3 [00:00<?, ?it/s]\rFetching 3 files:  33%|###3      | 1/3 [00:01<00:02, 1.00s/it]\r" +
			red + "Error: File not found in model 'org/name'.\nURL: https://huggingface.co/org/name/resolve/main/a.bin" + reset + "\n" +
			"Error: a second error\n" + hint,
		exit: "1",
		want: "File not found in model 'org/name'.",
	}, {
		name:   "control characters and other escapes",
		stderr: red + "Error: odd\tmessage\a with \x1b]8;;x\x1b\\ escapes" + reset + "\n",
		exit:   "2",
		want:   "oddmessage with ]8;;x\\ escapes",
	}, {
		name:   "exactly 300 bytes",
		stderr: "Error: " + strings.Repeat("x", 300) + "\n",
		exit:   "1",
		want:   strings.Repeat("x", 300),
	}, {
		name:   "301 bytes",
		stderr: "Error: " + strings.Repeat("x", 301) + "\n",
		exit:   "1",
		want:   strings.Repeat("x", 300),
	}, {
		// 1 + 2×149 = 299 bytes: a 150th é would end at byte 301.
		name:   "two-byte characters at the cut",
		stderr: "Error: x" + strings.Repeat("é", 200) + "\n",
		exit:   "1",
		want:   "x" + strings.Repeat("é", 149),
	}, {
		name:   "three-byte characters at the cut",
		stderr: "Error: ab" + strings.Repeat("✓", 120) + "\n",
		exit:   "1",
		want:   "ab" + strings.Repeat("✓", 99),
	}, {
		name:   "four-byte characters at the cut",
		stderr: "Error: a" + strings.Repeat("😀", 100) + "\n",
		exit:   "1",
		want:   "a" + strings.Repeat("😀", 74),
	}, {
		name: "traceback without a message of hf's",
		stderr: "Traceback (most recent call last):\n  File \"hf\", line 1, in <module>\n" +
			"TypeError: BaseFileLock.__init__() got an unexpected keyword argument 'mode'\n\n",
		exit: "1",
		want: "hf exited with code 1: TypeError: BaseFileLock.__init__() got an unexpected keyword argument 'mode'",
	}, {
		name:   "killed",
		stderr: "Fetching 2 files:  50%|#####     | 1/2\n",
		exit:   "137",
		want:   "hf exited with code 137",
	}, {
		name: "silent",
		exit: "4",
		want: "hf exited with code 4",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			stderr := filepath.Join(h.root, "hf-stderr")
			mustWrite(t, stderr, tc.stderr)
			env := map[string]string{"HFSTUB_MODE": "fail", "HFSTUB_STDERR": stderr, "HFSTUB_EXIT": tc.exit, EnvToken: realHFToken}
			for k, v := range tc.env {
				env[k] = v
			}
			// The termination log already holds something: it is replaced.
			mustWrite(t, h.termLog(), "old\nlines\n")
			r := h.runKeepTermLog(env)
			want := strings.ReplaceAll(tc.want, "{dir}", h.dir)
			if w, ok := strings.CutPrefix(want, "!"); ok {
				want = w
			} else {
				want = "download of org/name@main failed: " + want
			}
			h.checkFailure(r, want)
			if tc.stderr != "" && !strings.Contains(r.out, tc.stderr) {
				t.Errorf("the log lacks hf's stderr %q:\n%s", tc.stderr, r.out)
			}
			checkClean(t, h, r)
		})
	}
}

// TestReasonIsOneLine: a value with newlines still makes a one-line reason.
func TestReasonIsOneLine(t *testing.T) {
	h := newHarness(t)
	r := h.run(map[string]string{EnvRepoType: "model\nrm -rf /\n"})
	h.checkFailure(r, `HFDL_REPO_TYPE must be model or dataset, not "model rm -rf / "`)
}

// TestFailureWithoutCapture: without mkfifo (or a writable TMPDIR) hf runs
// as before, its stderr in the log, and a failure says its exit code.
func TestFailureWithoutCapture(t *testing.T) {
	for name, setup := range map[string]func(h *harness) map[string]string{
		"no mkfifo": func(h *harness) map[string]string {
			mustRemove(h.t, filepath.Join(h.tools, "mkfifo"))
			return nil
		},
		"no TMPDIR": func(h *harness) map[string]string {
			return map[string]string{"TMPDIR": filepath.Join(h.root, "no", "such", "dir")}
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			env := setup(h)
			if env == nil {
				env = map[string]string{}
			}
			env["HFSTUB_MODE"] = "fail"
			env["HFSTUB_MSG"] = "Error: Access denied. Model 'org/name' requires approval."
			env["HFSTUB_EXIT"] = "1"
			r := h.run(env)
			h.checkFailure(r, "download of org/name@main failed: hf exited with code 1")
			if !strings.Contains(r.out, "\nError: Access denied. Model 'org/name' requires approval.\n") {
				t.Errorf("hf's stderr is not in the log:\n%s", r.out)
			}
			again := map[string]string{}
			if v, ok := env["TMPDIR"]; ok {
				again["TMPDIR"] = v
			}
			if r := h.run(again); r.code != 0 {
				t.Errorf("a download without capture: exit %d\n%s", r.code, r.out)
			}
		})
	}
}

// TestFailureTermLogUnwritable: a termination log that cannot be written
// changes neither the exit code nor the last line of output.
func TestFailureTermLogUnwritable(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"hf fails":     {"HFSTUB_MODE": "fail", "HFSTUB_MSG": "Error: Revision not found in model 'org/name'.", "HFSTUB_EXIT": "1"},
		"bad env":      {EnvForce: "maybe"},
		"hf fails 137": {"HFSTUB_MODE": "fail", "HFSTUB_EXIT": "137"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			env[EnvTerminationLog] = filepath.Join(h.root, "no", "such", "dir", "termination-log")
			r := h.run(env)
			if r.code != 1 {
				t.Errorf("exit %d, want 1\n%s", r.code, r.out)
			}
			want := map[string]string{
				"hf fails":     "hf-download: download of org/name@main failed: revision main not found in https://huggingface.co/org/name",
				"bad env":      `hf-download: HFDL_FORCE must be true or false, not "maybe"`,
				"hf fails 137": "hf-download: download of org/name@main failed: hf exited with code 137",
			}[name]
			if r.lastLine() != want {
				t.Errorf("last line %q, want %q\n%s", r.lastLine(), want, r.out)
			}
			// No shell error about the termination log ("hf-download: 77:
			// cannot create ..." in dash, "hf-download: line 77: can't create"
			// in busybox).
			if regexp.MustCompile(`(?m)^hf-download: (line )?[0-9]+: `).MatchString(r.out) {
				t.Errorf("a shell error in the output:\n%s", r.out)
			}
		})
	}
}

// TestStderrStreamsLive: hf's stderr reaches the log while hf runs, not when
// it ends, and stdout and stderr both stay in the log.
func TestStderrStreamsLive(t *testing.T) {
	h := newHarness(t)
	gate := filepath.Join(h.root, "gate")
	mustWriteExec(t, filepath.Join(h.stubs, "hf"), `#!/bin/sh
PATH=/usr/bin:/bin
echo "to stdout"
echo "Fetching 1 files: 0%" >&2
while [ ! -e "$HFSTUB_GATE" ]; do sleep 0.1; done
echo "Error: released" >&2
exit 5
`)
	s := h.start(map[string]string{"HFSTUB_GATE": gate})
	waitFor(t, "hf's stderr in the log while hf runs", s, func() bool { return strings.Contains(s.out.String(), "\nFetching 1 files: 0%\n") })
	mustWrite(t, gate, "")
	r := s.wait()
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"to stdout", "Error: released"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("the log lacks %q:\n%s", want, r.out)
		}
	}
	if last := r.lastLine(); last != "hf-download: download of org/name@main failed: released" {
		t.Errorf("last line %q", last)
	}
}
