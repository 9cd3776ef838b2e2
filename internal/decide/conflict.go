package decide

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// Two ModelDownloads, one directory. A model lands in <name> on its PVC, so
// two ModelDownloads of a namespace that name the same model on the same PVC
// write into one directory. The same content there is fine: they share it
// (one waits while the other downloads, then finds the marker). Different
// content (revision, type, globs) would be a tug of war in which both report
// Completed in turn. The ModelDownload that came first (oldest, then by name)
// owns the directory; any other that wants different content in it gets no
// Job for that model until one of them changes, and both say so.

const (
	ConditionConflict = "DirectoryConflict"
	ReasonNoConflict  = "NoConflict"
	ReasonConflicting = "ConflictingModelDownloads"
)

// DirUser is one ModelDownload's use of a model directory.
type DirUser struct {
	// name is the ModelDownload as its users know it (a claim's name for a
	// claim's XR); created and the XR's name order who came first.
	Name, Created, XRName string
	Content               string
	describe              string
	// running: its status says this content is being downloaded now.
	Running bool
}

func (u DirUser) before(o DirUser) bool {
	if u.Created != o.Created {
		return u.Created < o.Created
	}
	return u.XRName < o.XRName
}

// directories maps a model name to the other ModelDownloads that put it on
// the same PVC.
type Directories map[string][]DirUser

// PeerDirectories are the directories the other ModelDownloads of the
// namespace want on the same PVC. One whose spec is unusable claims nothing.
func PeerDirectories(peers []read.Peer, pvc string) Directories {
	if len(peers) == 0 {
		return nil
	}
	dirs := Directories{}
	for _, p := range peers {
		if p.Spec == nil || p.Spec.StoragePVC != pvc {
			continue
		}
		for i := range p.Spec.Models {
			m := &p.Spec.Models[i]
			if len(m.Errs) > 0 {
				continue
			}
			content := naming.ContentHash(&m.Model)
			rec, ok := p.Recorded[m.Name]
			dirs[m.Name] = append(dirs[m.Name], DirUser{
				Name:     p.Name,
				Created:  p.Created,
				XRName:   p.XRName,
				Content:  content,
				describe: describeContent(m),
				Running:  ok && PhaseState(rec.Phase) == StateRunning && rec.ContentHash == content,
			})
		}
	}
	return dirs
}

// describeContent says what a model puts in its directory, for messages.
func describeContent(m *read.ModelSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s@%s", m.RepoType, m.Name, m.Revision)
	if len(m.Include) > 0 {
		fmt.Fprintf(&b, " include %q", m.Include)
	}
	if len(m.Exclude) > 0 {
		fmt.Fprintf(&b, " exclude %q", m.Exclude)
	}
	return b.String()
}

// dirVerdict is what the other users of a model's directory mean for it.
type dirVerdict struct {
	// blockedBy is the owner wanting other content; no Job while it is set.
	blockedBy *DirUser
	// waitFor is a ModelDownload downloading the same content now.
	waitFor *DirUser
	// waiting are the later ones that want other content and wait.
	waiting []DirUser
}

// judge applies the rule above to one model of this ModelDownload.
func (d Directories) judge(self DirUser, model string) dirVerdict {
	var v dirVerdict
	users := d[model]
	if len(users) == 0 {
		return v
	}
	first, selfFirst := self, true
	for i := range users {
		if users[i].before(first) {
			first, selfFirst = users[i], false
		}
	}
	if first.Content != self.Content {
		v.blockedBy = &first
		return v
	}
	for i := range users {
		u := users[i]
		switch {
		case u.Content != self.Content:
			if selfFirst {
				v.waiting = append(v.waiting, u)
			}
		case u.Running && v.waitFor == nil:
			v.waitFor = &users[i]
		}
	}
	sort.Slice(v.waiting, func(i, j int) bool { return v.waiting[i].before(v.waiting[j]) })
	return v
}

// conflictNote is one line of the DirectoryConflict condition.
func (v dirVerdict) notes(model, pvc string, self DirUser) []string {
	var out []string
	if b := v.blockedBy; b != nil {
		out = append(out, fmt.Sprintf("%s: ModelDownload %q (older) puts %s into the same directory of PVC %q; this one wants %s and downloads nothing there until one of them changes",
			model, b.Name, b.describe, pvc, self.describe))
	}
	for _, w := range v.waiting {
		out = append(out, fmt.Sprintf("%s: ModelDownload %q wants %s in the same directory of PVC %q and waits, as this one (older) puts %s there",
			model, w.Name, w.describe, pvc, self.describe))
	}
	return out
}
