package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/store"
)

// A layer is a read-only tree of what changed above its parent (another layer, or the
// template's tree): an overlay VE's former upper directory, kept when the VE was
// snapshotted or cloned. Layers live in a pool shared by every VE, so that snapshots and
// clones share them; the overlay's lower layers are the VE's chain of layers over the
// template.
type Layer struct {
	ID       string    `json:"id"`
	Parent   string    `json:"parent,omitempty"` // "": the template
	Template string    `json:"template"`
	VE       string    `json:"ve"` // the VE that made it
	Created  time.Time `json:"created"`
	// Owner are the host uid and gid of the ids 0.. in the tree: 0 and 0 for a privileged
	// VE's, the VE's range for a user-namespace VE's. A VE of another range sees the layer
	// through an idmapped mount.
	Owner [2]uint32 `json:"owner"`
	// Full: a whole copy of a copy VE's rootfs (the tree) or an image VE's disk
	// (tree/root.img), not an overlay layer; it has no parent.
	Full bool `json:"full,omitempty"`
}

// Pool is the directory of the layers: Dir/ID/tree and Dir/ID/layer.json.
type Pool struct{ Dir string }

const layerMeta = "layer.json"

// Tree is the directory tree of layer id.
func (p Pool) Tree(id string) string { return filepath.Join(p.Dir, id, "tree") }

// Load reads a layer's description.
func (p Pool) Load(id string) (Layer, error) {
	var l Layer
	data, err := os.ReadFile(filepath.Join(p.Dir, id, layerMeta))
	if err != nil {
		return l, fmt.Errorf("layer %s: %w", id, err)
	}
	if err := json.Unmarshal(data, &l); err != nil || l.ID != id {
		return l, fmt.Errorf("layer %s: %s is corrupt", id, filepath.Join(p.Dir, id, layerMeta))
	}
	return l, nil
}

// Save writes a layer's description (atomically), making its directory if needed.
func (p Pool) Save(l Layer) error {
	if err := os.MkdirAll(filepath.Join(p.Dir, l.ID), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(p.Dir, l.ID, layerMeta), append(data, '\n'), 0o600)
}

// Chain returns layer top and its ancestors, top first; "" gives none.
func (p Pool) Chain(top string) ([]Layer, error) {
	var out []Layer
	seen := map[string]bool{}
	for id := top; id != ""; {
		if seen[id] {
			return nil, fmt.Errorf("layer %s: its parents form a cycle", top)
		}
		seen[id] = true
		l, err := p.Load(id)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
		id = l.Parent
	}
	return out, nil
}

// List returns every layer of the pool; a directory without a readable description is
// returned with only its ID (a layer whose making was cut short).
func (p Pool) List() ([]Layer, error) {
	ents, err := os.ReadDir(p.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Layer
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		l, err := p.Load(e.Name())
		if err != nil {
			l = Layer{ID: e.Name()}
		}
		out = append(out, l)
	}
	return out, nil
}

// Remove deletes a layer.
func (p Pool) Remove(id string) error {
	if id == "" {
		return errors.New("remove layer: no id")
	}
	return os.RemoveAll(filepath.Join(p.Dir, id))
}

// LayerDir is one lower layer of an Area above the template: its tree and its Owner.
type LayerDir struct {
	Path  string
	Owner [2]uint32
}

// owner is the host uid and gid of the area's root: 0, 0 for a privileged VE.
func (a Area) owner() [2]uint32 {
	if a.Owner != nil {
		return *a.Owner
	}
	return [2]uint32{}
}

// mountLayered mounts an overlay of a.Layers over the template (and the private upper
// directory unless a.ReadOnly) on a.Root with the new mount API, which takes any number of
// lower layers. A layer owned by other ids than the area's, and the template of a
// user-namespace VE, are seen through idmapped mounts staged in the private area.
func (a Area) mountLayered() (err error) {
	if _, serr := os.Stat(a.Lower); serr != nil {
		return fmt.Errorf("template %s: %v", a.Template, serr)
	}
	if err := Unstage(a.Private); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, Unstage(a.Private)) }()
	stageDir := filepath.Join(a.Private, "stage")
	if err := os.Mkdir(stageDir, 0o700); err != nil {
		return err
	}
	own := a.owner()
	var lowers []string
	for i, l := range a.Layers {
		if l.Owner == own {
			lowers = append(lowers, l.Path)
			continue
		}
		dir := filepath.Join(stageDir, fmt.Sprint(i))
		if err := shiftedBind(l.Path, dir, filepath.Join(stageDir, fmt.Sprintf("userns.%d", i)), l.Owner, own); err != nil {
			return err
		}
		lowers = append(lowers, dir)
	}
	switch {
	case a.Userns != "":
		dir := filepath.Join(stageDir, "template")
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if err := idmap.Bind(a.Lower, dir, a.Userns); err != nil {
			return err
		}
		lowers = append(lowers, dir)
	case own != [2]uint32{}:
		dir := filepath.Join(stageDir, "template")
		if err := shiftedBind(a.Lower, dir, filepath.Join(stageDir, "userns.template"), [2]uint32{}, own); err != nil {
			return err
		}
		lowers = append(lowers, dir)
	default:
		lowers = append(lowers, a.Lower)
	}
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlay lower layer %s: %w", l, err)
		}
	}
	attrs := 0
	if a.ReadOnly {
		attrs = unix.MOUNT_ATTR_RDONLY
	} else {
		for k, v := range map[string]string{"upperdir": filepath.Join(a.Private, "upper"), "workdir": filepath.Join(a.Private, "work")} {
			if err := unix.FsconfigSetString(fd, k, v); err != nil {
				return fmt.Errorf("overlay %s %s: %w", k, v, err)
			}
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("overlay of %d layers: %w", len(lowers), err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, a.Root, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// shiftedBind makes an idmapped copy of src on dst (made here) in which the ids from..
// appear as to..: a user namespace mapping them is pinned on nsFile for the time of it.
func shiftedBind(src, dst, nsFile string, from, to [2]uint32) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	if err := idmap.PinMap(nsFile, from[0], to[0], from[1], to[1]); err != nil {
		return err
	}
	defer idmap.Unpin(nsFile)
	return idmap.Bind(src, dst, nsFile)
}

// The overlay's marks in a layer (the overlay is mounted by host root: trusted xattrs).
const opaqueXattr = "trusted.overlay.opaque"

func opaque(path string) bool {
	buf := make([]byte, 4)
	n, err := unix.Lgetxattr(path, opaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// Merge folds the layer tree lower into upper, the tree directly above it (a layer or a
// VE's upper directory), so that upper alone shows what the two showed: what upper holds
// stays (a file, symlink or whiteout hides lower's entry; an opaque directory hides lower's
// whole directory); lower's other entries move into upper. Moving is renaming: no data is
// copied. Cut short, upper still shows the same over the rest of lower, so the merge can
// be run again; at the end lower is removed.
func Merge(lower, upper string) error {
	if err := mergeDir(lower, upper); err != nil {
		return fmt.Errorf("merge layer %s into %s: %w", lower, upper, err)
	}
	return os.RemoveAll(lower)
}

func mergeDir(lower, upper string) error {
	ents, err := os.ReadDir(lower)
	if err != nil {
		return err
	}
	for _, e := range ents {
		lp, up := filepath.Join(lower, e.Name()), filepath.Join(upper, e.Name())
		ust, err := os.Lstat(up)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(lp, up); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		// A non-directory in upper hides lower's entry, and so does a directory over a
		// non-directory or an opaque directory.
		if !ust.IsDir() || !e.IsDir() || opaque(up) {
			continue
		}
		if err := mergeDir(lp, up); err != nil {
			return err
		}
		if opaque(lp) {
			if err := unix.Lsetxattr(up, opaqueXattr, []byte("y"), 0); err != nil {
				return fmt.Errorf("mark %s opaque: %w", up, err)
			}
		}
	}
	return nil
}
