// Command rootfs-image packs a directory, a root filesystem, into a one-layer
// image and writes it as a tarball that `ctr images import` and `docker load`
// accept (go-containerregistry's docker-archive), with the given name and
// config. It needs no Docker engine.
//
// The layer is deterministic for a given directory: entries in lexical order,
// each with its own mode, owner and mtime (cut to the second, so that Python's
// bytecode caches, which record their source's mtime, stay valid), no user or
// group names, no access or change times; --mtime sets one mtime for all.
// Hard links stay links. Device nodes and sockets are left out: a container
// runtime makes /dev itself.
package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type options struct {
	dir, out, tag, user  string
	arch                 string
	env, entrypoint, cmd []string
	expose               []string
	mtime                int64
	mtimeSet             bool
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", "", "the root filesystem to pack")
	flag.StringVar(&o.out, "out", "", "where to write the image tarball")
	flag.StringVar(&o.tag, "tag", "", "the image's name, e.g. docker.io/org/name:tag")
	flag.StringVar(&o.user, "user", "", "the config's User, e.g. 1000:1000")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "the config's Architecture: the GOARCH the root filesystem's programs were built for")
	flag.Func("env", "an entry of the config's Env, NAME=value (repeatable)", appendTo(&o.env))
	flag.Func("entrypoint", "an element of the config's Entrypoint (repeatable)", appendTo(&o.entrypoint))
	flag.Func("cmd", "an element of the config's Cmd (repeatable)", appendTo(&o.cmd))
	flag.Func("expose", "a port of the config's ExposedPorts, e.g. 9443/tcp (repeatable)", appendTo(&o.expose))
	flag.Func("mtime", "one mtime (Unix seconds) for every entry instead of their own", func(s string) error {
		var err error
		o.mtime, err = strconv.ParseInt(s, 10, 64)
		o.mtimeSet = true
		return err
	})
	flag.Parse()
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "rootfs-image:", err)
		os.Exit(1)
	}
}

func appendTo(list *[]string) func(string) error {
	return func(s string) error {
		*list = append(*list, s)
		return nil
	}
}

func run(o *options) error {
	if o.dir == "" || o.out == "" || o.tag == "" {
		return errors.New("--dir, --out and --tag are required")
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return err
	}
	// The layer is compressed once, to a file beside the output, then read from
	// there for its digests and the tarball.
	gz, err := os.CreateTemp(filepath.Dir(o.out), ".layer-*.tar.gz")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(gz.Name()) }()
	err = writeLayer(gz, o)
	if cerr := gz.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(gz.Name())
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", o.arch
	cfg.Config.User = o.user
	cfg.Config.Env = o.env
	cfg.Config.Entrypoint = o.entrypoint
	cfg.Config.Cmd = o.cmd
	for _, p := range o.expose {
		if cfg.Config.ExposedPorts == nil {
			cfg.Config.ExposedPorts = map[string]struct{}{}
		}
		cfg.Config.ExposedPorts[p] = struct{}{}
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return tarball.WriteToFile(o.out, ref, img)
}

// writeLayer writes the gzipped tar of o.dir to w.
func writeLayer(w io.Writer, o *options) error {
	root, err := os.OpenRoot(o.dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{} // the first path written for each hard-linked file
	err = fs.WalkDir(root.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", path)
		}
		hdr := &tar.Header{
			Name:    path,
			Mode:    int64(fi.Mode().Perm()),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: fi.ModTime().Truncate(time.Second),
		}
		if o.mtimeSet {
			hdr.ModTime = time.Unix(o.mtime, 0)
		}
		if fi.Mode()&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			hdr.Mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		switch t := fi.Mode().Type(); {
		case t == fs.ModeDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, path+"/"
		case t == fs.ModeSymlink:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = root.Readlink(path); err != nil {
				return err
			}
		case t == fs.ModeNamedPipe:
			hdr.Typeflag = tar.TypeFifo
		case t.IsRegular():
			id := inode{st.Dev, st.Ino}
			if first, ok := links[id]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return tw.WriteHeader(hdr)
			}
			if st.Nlink > 1 {
				links[id] = path
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			return copyFile(tw, root, path)
		default: // devices and sockets
			return nil
		}
		return tw.WriteHeader(hdr)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func copyFile(w io.Writer, root *os.Root, path string) error {
	f, err := root.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = io.Copy(w, f)
	return err
}
