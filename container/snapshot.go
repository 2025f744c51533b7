package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/store"
)

// Snapshots (vzctl snapshot and its kin) on the overlay layout. A snapshot's files are a
// chain of read-only layers over the template (layout.Layer): a snapshot of a stopped VE
// turns its upper directory into a layer and gives the VE a new, empty upper over it, so it
// costs a rename whatever the data size. A running VE's upper is copied instead (rsync while
// it runs, then again while it is frozen): the VE keeps its upper, and the snapshot's layer
// sits beside it on the same base. The records are ve/ID/snapshots.json; the layers live in
// ROOT/layers, shared with clones.

const (
	snapshotsFile   = "snapshots.json"
	snapPendingFile = "snapshot.pending" // a snapshot or clone under way: its layer is not yet recorded
)

// Errors of the snapshot commands, with vzctl's exit codes where vzctl has one.
var (
	ErrSnapshot       = errors.New("snapshot failed")        // 156
	ErrSnapshotDelete = errors.New("snapshot delete failed") // 158
	ErrSnapshotSwitch = errors.New("snapshot switch failed") // 159
	ErrNoSnapshot     = errors.New("no such snapshot")       // 160
	ErrHasSnapshots   = errors.New("VE has snapshots")       // 161
)

// Snapshot is one snapshot of a VE.
type Snapshot struct {
	UUID        string    `json:"uuid"`
	Parent      string    `json:"parent,omitempty"` // the snapshot the VE was at when this one was taken
	Name        string    `json:"name,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Layer is the top layer of the snapshot's files.
	Layer string `json:"layer"`
	// Running: taken from a running VE (frozen for the final pass).
	Running bool `json:"running,omitempty"`
	// Frozen is how long the VE was frozen for it, in milliseconds.
	Frozen int64 `json:"frozen_ms,omitempty"`
	// Dump: the running VE's memory was dumped with CRIU in the same frozen moment
	// (ROOT/dump/ID.snapshots/UUID); snapshot-switch resumes its processes from it.
	Dump bool `json:"dump,omitempty"`
	// Config is the VE's config.json when it was taken (none with --skip-config).
	Config json.RawMessage `json:"config,omitempty"`
	// Mount is where snapshot-mount mounted it ("" if not).
	Mount string `json:"mount,omitempty"`
}

// snapshotSet is ve/ID/snapshots.json.
type snapshotSet struct {
	// Current is the snapshot the VE's current state descends from (vzctl's "current").
	Current   string     `json:"current,omitempty"`
	Snapshots []Snapshot `json:"snapshots"`
}

func (s *snapshotSet) find(uuid string) int {
	return slices.IndexFunc(s.Snapshots, func(x Snapshot) bool { return x.UUID == uuid })
}

// SnapshotOptions control Snapshot.
type SnapshotOptions struct {
	UUID, Name, Description string
	SkipConfig              bool // do not keep the VE's config in the snapshot
	// SkipSuspend is vzctl's "no memory dump": vectl's snapshots hold none anyway, and a
	// running VE is still frozen for the final pass, so that its files are consistent.
	SkipSuspend bool
}

// SnapshotInfo is a snapshot as snapshot-list shows it.
type SnapshotInfo struct {
	Snapshot
	Current bool  `json:"current"`
	Size    int64 `json:"size"` // bytes of its own layer
}

var uuidRE = lazyRegexp(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// NewUUID returns a new random snapshot UUID.
func NewUUID() string { return newUUID() }

// NormalizeUUID accepts a snapshot id as vzctl prints it ({uuid}) or bare.
func NormalizeUUID(s string) (string, error) {
	u := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}"))
	if !uuidRE().MatchString(u) {
		return "", fmt.Errorf("%w: snapshot id %q: use a UUID such as 2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d (braces allowed)", ErrInvalidValue, s)
	}
	return u, nil
}

func (m *Manager) layers() layout.Pool { return layout.Pool{Dir: filepath.Join(m.opts.Root, "layers")} }

func (m *Manager) loadSnapshots(id string) (*snapshotSet, error) {
	var s snapshotSet
	data, err := os.ReadFile(filepath.Join(m.store.VEDir(id), snapshotsFile))
	if errors.Is(err, os.ErrNotExist) {
		return &s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: corrupt: %v", filepath.Join(m.store.VEDir(id), snapshotsFile), err)
	}
	return &s, nil
}

func (m *Manager) saveSnapshots(id string, s *snapshotSet) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(m.store.VEDir(id), snapshotsFile), append(data, '\n'), 0o600)
}

// layerDirs are the lower layers of a VE's current state above its template, top first.
func (m *Manager) layerDirs(top string) ([]layout.LayerDir, error) {
	chain, err := m.layers().Chain(top)
	if err != nil {
		return nil, err
	}
	out := make([]layout.LayerDir, 0, len(chain))
	for _, l := range chain {
		out = append(out, layout.LayerDir{Path: m.layers().Tree(l.ID), Owner: l.Owner})
	}
	return out, nil
}

func ownerOf(cfg *Config) [2]uint32 {
	if u := cfg.UserNS; u != nil {
		return [2]uint32{u.UID, u.GID}
	}
	return [2]uint32{}
}

// pendingLayer is snapshot.pending: a layer being made for a snapshot (Snap set) or a
// clone's base (Snap nil). Moved: the VE's upper directory becomes the layer and the VE
// goes on from it (Base).
type pendingLayer struct {
	Layer string    `json:"layer"`
	Moved bool      `json:"moved"`
	Snap  *Snapshot `json:"snapshot,omitempty"`
}

// finishPending completes or undoes a snapshot that a killed vectl left half made, from
// snapshot.pending: once the layer's tree is in place it is recorded, otherwise removed.
// The caller holds the VE's lock.
func (m *Manager) finishPending(cfg *Config) error {
	path := filepath.Join(m.store.VEDir(cfg.ID), snapPendingFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var p pendingLayer
	if err != nil || json.Unmarshal(data, &p) != nil || p.Layer == "" {
		return fmt.Errorf("%s: unreadable; remove it and run vectl snapshot-list %s", path, cfg.ID)
	}
	priv := m.store.PrivateDir(cfg.ID)
	upper, fresh := filepath.Join(priv, "upper"), filepath.Join(priv, "upper.new")
	if _, err := os.Stat(m.layers().Tree(p.Layer)); err != nil {
		// Not made: undo.
		if p.Moved {
			if _, err := os.Stat(upper); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("VE %s: its upper directory is gone and layer %s was not made: check %s", cfg.ID, p.Layer, priv)
			}
		}
		os.RemoveAll(fresh)
		if err := m.layers().Remove(p.Layer); err != nil {
			return err
		}
		return os.Remove(path)
	}
	if p.Moved {
		if _, err := os.Stat(upper); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(fresh, upper); err != nil {
				return err
			}
		}
		if cfg.Base != p.Layer {
			cfg.Base = p.Layer
			if err := m.store.SaveConfig(cfg); err != nil {
				return err
			}
		}
	}
	if p.Snap != nil {
		set, err := m.loadSnapshots(cfg.ID)
		if err != nil {
			return err
		}
		if set.find(p.Snap.UUID) < 0 {
			set.Snapshots = append(set.Snapshots, *p.Snap)
			set.Current = p.Snap.UUID
			if err := m.saveSnapshots(cfg.ID, set); err != nil {
				return err
			}
		}
	}
	return os.Remove(path)
}

// newLayer makes a layer of a VE's current upper directory. A stopped VE's upper becomes
// the layer (a rename) and the VE goes on from a new empty upper over it: cfg.Base moves
// up. A running VE's upper is copied (two rsync passes, the second while frozen) and the VE
// keeps its base. snap, when given, is recorded with the layer.
func (m *Manager) newLayer(ctx context.Context, cfg *Config, running bool, snap *Snapshot, inFreeze func() error) (string, error) {
	priv := m.store.PrivateDir(cfg.ID)
	upper, fresh := filepath.Join(priv, "upper"), filepath.Join(priv, "upper.new")
	full := cfg.Layout != LayoutOverlay
	l := layout.Layer{ID: newUUID(), Parent: cfg.Base, Template: cfg.OSTemplate, VE: cfg.ID,
		Created: time.Now().UTC().Truncate(time.Second), Owner: ownerOf(cfg), Full: full}
	if full {
		l.Parent = ""
	}
	moved := !running && !full
	p := pendingLayer{Layer: l.ID, Moved: moved, Snap: snap}
	if snap != nil {
		snap.Layer = l.ID
	}
	pending := filepath.Join(m.store.VEDir(cfg.ID), snapPendingFile)
	data, _ := json.Marshal(p)
	if err := store.WriteFileAtomic(pending, data, 0o600); err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		os.RemoveAll(fresh)
		m.layers().Remove(l.ID)
		os.Remove(pending)
		return "", err
	}
	if err := m.layers().Save(l); err != nil {
		return fail(err)
	}
	tree := m.layers().Tree(l.ID)
	if !moved {
		var frozen time.Duration
		var err error
		switch cfg.Layout {
		case LayoutOverlay:
			frozen, err = m.copyUpper(ctx, cfg.ID, upper, tree+".new", running, inFreeze)
		case LayoutCopy:
			frozen, err = m.copyUpper(ctx, cfg.ID, filepath.Join(priv, "rootfs"), tree+".new", running, inFreeze)
		default:
			frozen, err = m.copyImage(ctx, cfg.ID, filepath.Join(priv, "root.img"), filepath.Join(tree+".new", "root.img"), running, inFreeze)
		}
		if err != nil {
			os.RemoveAll(tree + ".new")
			return fail(err)
		}
		if snap != nil {
			snap.Frozen = frozen.Milliseconds()
			p.Snap = snap
			data, _ := json.Marshal(p)
			if err := store.WriteFileAtomic(pending, data, 0o600); err != nil {
				return fail(err)
			}
		}
		if err := os.Rename(tree+".new", tree); err != nil {
			return fail(err)
		}
	} else {
		var st unix.Stat_t
		if err := unix.Lstat(upper, &st); err != nil {
			return fail(err)
		}
		if err := os.Mkdir(fresh, 0o700); err != nil {
			return fail(err)
		}
		if err := os.Chmod(fresh, os.FileMode(st.Mode&0o7777)); err != nil {
			return fail(err)
		}
		if err := os.Lchown(fresh, int(st.Uid), int(st.Gid)); err != nil {
			return fail(err)
		}
		if err := os.Rename(upper, tree); err != nil {
			if errors.Is(err, unix.EXDEV) {
				err = fmt.Errorf("%s and %s are on different filesystems: the layers must be on the private areas' filesystem", priv, m.layers().Dir)
			}
			return fail(err)
		}
	}
	// From here the layer exists: finishPending completes what follows if we are killed.
	return l.ID, m.finishPending(cfg)
}

// copyUpper copies a running VE's upper directory to dst: one rsync pass while it runs, a
// second one (what changed meanwhile, nanosecond times compared) while it is frozen, with
// inFreeze (if any) beside it before the VE is thawed. It returns how long the VE was frozen.
func (m *Manager) copyUpper(ctx context.Context, id, upper, dst string, running bool, inFreeze func() error) (time.Duration, error) {
	// live: the pass runs beside the VE, whose files may vanish while rsync copies them
	// (rsyncVanished), which the frozen pass then takes as they are. A pass with the VE frozen
	// or stopped must copy everything it listed.
	rsync := func(live bool) error {
		args := []string{"-aHAXS", "--numeric-ids", "--delete", "--modify-window=-1", upper + "/", dst + "/"}
		out, err := exec.CommandContext(ctx, "rsync", args...).CombinedOutput()
		if err == nil {
			return nil
		}
		err = &cmdError{fmt.Sprintf("rsync %s: %s", upper, lastLine(out, err)), err, out}
		if live && rsyncVanished(err) {
			return nil
		}
		return err
	}
	if err := rsync(running); err != nil || !running {
		return 0, err
	}
	return m.whileFrozen(id, func() error {
		if inFreeze == nil {
			return rsync(false)
		}
		// The final pass and inFreeze (a dump) at once: neither changes what the other
		// reads while the VE is frozen (a dump that leaves the VE running links nothing
		// into its files, see checkpoint).
		done := make(chan error, 1)
		go func() { done <- rsync(false) }()
		err := inFreeze()
		return errors.Join(<-done, err)
	})
}

// copyImage copies a VE's disk image (holes kept) to dst; a running VE is frozen for the
// copy, and for inFreeze after it, and so is its filesystem (FIFREEZE: what it holds in
// memory is written to the image first, and its journal is clean in the copy). It returns
// how long the VE was frozen.
func (m *Manager) copyImage(ctx context.Context, id, img, dst string, running bool, inFreeze func() error) (time.Duration, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return 0, err
	}
	cp := func() error {
		out, err := exec.CommandContext(ctx, "cp", "--sparse=always", "--preserve=all", img, dst).CombinedOutput()
		if err != nil {
			return fmt.Errorf("cp %s: %s", img, lastLine(out, err))
		}
		return nil
	}
	if !running {
		return 0, cp()
	}
	return m.whileFrozen(id, func() error {
		if err := fsFrozen(m.store.RootDir(id), cp); err != nil {
			return err
		}
		if inFreeze != nil {
			return inFreeze()
		}
		return nil
	})
}

// The ioctls of fsfreeze(8): _IOWR('X', 119, int) and _IOWR('X', 120, int).
const (
	ioctlFIFREEZE = 0xc0045877
	ioctlFITHAW   = 0xc0045878
)

// fsFrozen runs fn with the filesystem mounted on root frozen (FIFREEZE), thawed after.
func fsFrozen(root string, fn func() error) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, ioctlFIFREEZE, 0); err != nil {
		return fmt.Errorf("freeze the filesystem on %s: %w", root, err)
	}
	err = fn()
	if terr := unix.IoctlSetInt(fd, ioctlFITHAW, 0); terr != nil {
		err = errors.Join(err, fmt.Errorf("thaw the filesystem on %s: %w", root, terr))
	}
	return err
}

// whileFrozen runs fn with the VE's processes frozen and returns how long they were. A VE
// frozen already (chkpnt --suspend) stays so.
func (m *Manager) whileFrozen(id string, fn func() error) (time.Duration, error) {
	if m.frozen(id) {
		return 0, fn()
	}
	c, err := libcontainer.Load(m.lcRoot(), id)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.Pause(); err != nil {
		return 0, fmt.Errorf("freeze: %w", err)
	}
	err = fn()
	if rerr := c.Resume(); rerr != nil {
		err = errors.Join(err, fmt.Errorf("thaw: %w", rerr))
	}
	return time.Since(start), err
}

// Snapshot takes a snapshot of a VE (vzctl snapshot) and returns its UUID.
func (m *Manager) Snapshot(ctx context.Context, ref string, o SnapshotOptions) (uuid string, err error) {
	err = m.locked(ref, "snapshot", func(id string) error {
		uuid, err = m.snapshot(ctx, id, o)
		return err
	})
	return uuid, err
}

func (m *Manager) snapshot(ctx context.Context, id string, o SnapshotOptions) (string, error) {
	cfg, err := m.snapshotConfig(id)
	if err != nil {
		return "", err
	}
	if o.Name != "" {
		if err := validateDescription(o.Name); err != nil {
			return "", err
		}
	}
	if err := validateDescription(o.Description); err != nil {
		return "", err
	}
	set, err := m.loadSnapshots(id)
	if err != nil {
		return "", err
	}
	uuid := newUUID()
	if o.UUID != "" {
		if uuid, err = NormalizeUUID(o.UUID); err != nil {
			return "", err
		}
		if set.find(uuid) >= 0 {
			return "", fmt.Errorf("snapshot %s %w", uuid, ErrExist)
		}
	}
	snap := &Snapshot{UUID: uuid, Parent: set.Current, Name: o.Name, Description: o.Description,
		Created: time.Now().UTC().Truncate(time.Second)}
	if !o.SkipConfig {
		if snap.Config, err = os.ReadFile(m.store.ConfigPath(id)); err != nil {
			return "", err
		}
	}
	running := m.populated(id)
	snap.Running = running
	remount := false
	if !running && layout.Mounted(m.store.RootDir(id)) {
		// vectl mount: the root is unmounted for the rename and mounted again after.
		if err := m.umountRoot(id); err != nil {
			return "", err
		}
		remount = true
	}
	var inFreeze func() error
	dumpDir := m.snapshotDump(id, uuid)
	// A user-namespace VE of the copy or image layout is not resumed from a dump: its root
	// is an idmapped mount, in which restore cannot make the mount points it needs.
	if running && !o.SkipSuspend && (cfg.Layout == LayoutOverlay || cfg.UserNS == nil) {
		if _, cerr := m.criu(); cerr == nil {
			// The memory in the same frozen moment as the files. A VE CRIU cannot dump
			// still gets its files' snapshot, with a warning.
			prepared := m.prepareDump(id)
			inFreeze = func() error {
				err := m.checkpoint(ctx, id, CheckpointOptions{Dir: dumpDir, LeaveRunning: true, keepFrozen: true, prepared: prepared})
				if err != nil {
					m.opts.Warn(fmt.Sprintf("snapshot %s: its memory was not dumped, the snapshot holds files and config: %v", id, err))
					os.RemoveAll(dumpDir)
					return nil
				}
				snap.Dump = true
				return nil
			}
		}
	}
	if _, err := m.newLayer(ctx, cfg, running, snap, inFreeze); err != nil {
		os.RemoveAll(dumpDir)
		err = fmt.Errorf("%w: %v", ErrSnapshot, err)
		if remount {
			err = errors.Join(err, m.mountRoot(cfg))
		}
		return "", err
	}
	if remount {
		cfg, err := m.store.LoadConfig(id)
		if err == nil {
			err = m.mountRoot(cfg)
		}
		if err != nil {
			return uuid, fmt.Errorf("snapshot %s taken, but the root was not mounted again: %w", uuid, err)
		}
	}
	return uuid, nil
}

// snapshotConfig loads a VE for a snapshot command: complete, with no half-made snapshot
// left over.
func (m *Manager) snapshotConfig(id string) (*Config, error) {
	cfg, err := m.loadComplete(id)
	if err != nil {
		return nil, err
	}
	if err := m.finishPending(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// snapshotOf loads a VE for a snapshot command (snapshotConfig) and finds its snapshot
// uuid: i is its index in set, -1 for none.
func (m *Manager) snapshotOf(id, uuid string) (cfg *Config, set *snapshotSet, i int, u string, err error) {
	if u, err = NormalizeUUID(uuid); err != nil {
		return nil, nil, -1, "", err
	}
	if cfg, err = m.snapshotConfig(id); err != nil {
		return nil, nil, -1, "", err
	}
	if set, err = m.loadSnapshots(id); err != nil {
		return nil, nil, -1, "", err
	}
	return cfg, set, set.find(u), u, nil
}

// locked runs fn on VE ref under its lock, its error prefixed with op and the VE's id.
func (m *Manager) locked(ref, op string, fn func(id string) error) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := fn(id); err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	return nil
}

// neededLayers lists the layers a VE needs: those under its current state and under each
// of its snapshots.
func (m *Manager) neededLayers(cfg *Config, set *snapshotSet) ([]string, error) {
	tops := []string{cfg.Base}
	for _, s := range set.Snapshots {
		tops = append(tops, s.Layer)
	}
	var out []string
	seen := map[string]bool{}
	for _, top := range tops {
		chain, err := m.layers().Chain(top)
		if err != nil {
			return nil, err
		}
		for _, l := range chain {
			if !seen[l.ID] {
				seen[l.ID] = true
				out = append(out, l.ID)
			}
		}
	}
	return out, nil
}

// snapshotDump is where the memory dump of a VE's snapshot is kept.
func (m *Manager) snapshotDump(id, uuid string) string {
	return filepath.Join(m.opts.Root, "dump", id+".snapshots", uuid)
}

// Snapshots lists a VE's snapshots in the order they were taken.
func (m *Manager) Snapshots(ref string) ([]SnapshotInfo, error) {
	id, err := m.resolve(ref)
	if err != nil {
		return nil, err
	}
	set, err := m.loadSnapshots(id)
	if err != nil {
		return nil, err
	}
	out := make([]SnapshotInfo, 0, len(set.Snapshots))
	for _, s := range set.Snapshots {
		s.Config = nil
		out = append(out, SnapshotInfo{Snapshot: s, Current: s.UUID == set.Current, Size: treeSize(m.layers().Tree(s.Layer))})
	}
	return out, nil
}

// treeSize is the disk space a tree's files take (hard links counted once).
func treeSize(dir string) int64 {
	var n int64
	seen := map[[2]uint64]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		k := [2]uint64{st.Dev, st.Ino}
		if st.Nlink > 1 && seen[k] {
			return nil
		}
		seen[k] = true
		n += st.Blocks * 512
		return nil
	})
	return n
}

// SwitchOptions control SnapshotSwitch.
type SwitchOptions struct {
	UUID       string
	SkipConfig bool // keep the VE's current config
	SkipResume bool // ignore the snapshot's memory dump: the VE ends stopped
	// MustResume fails when the snapshot has no memory dump or its restore fails (else
	// that is a warning and the VE ends stopped).
	MustResume bool
	// MonitorArgs runs this binary's monitor for a resumed VE (StartOptions.MonitorArgs).
	MonitorArgs []string
}

// SnapshotSwitch puts a VE back to a snapshot (vzctl snapshot-switch): its current files
// (and, unless SkipConfig, its config) are replaced by the snapshot's. A running VE is
// stopped first. A snapshot taken with a memory dump resumes the VE's processes as they
// were (unless SkipResume); without one the VE ends stopped.
func (m *Manager) SnapshotSwitch(ctx context.Context, ref string, o SwitchOptions) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	dump, err := m.snapshotSwitch(ctx, id, o)
	if err != nil || dump == "" {
		l.Unlock()
		if err != nil {
			return fmt.Errorf("snapshot-switch %s: %w", id, err)
		}
		return nil
	}
	// Restore consumes its dump: it works on a copy of the snapshot's (hard links; CRIU only
	// reads the images), and lets go of the lock itself.
	tmp := filepath.Join(filepath.Dir(filepath.Dir(dump)), id+".resume") // beside chkpnt's dumps: reachable as theirs
	os.RemoveAll(tmp)
	err = nil
	if out, cerr := exec.Command("cp", "-al", dump, tmp).CombinedOutput(); cerr != nil {
		l.Unlock()
		err = fmt.Errorf("copy the dump: %s", lastLine(out, cerr))
	} else {
		err = m.restore(ctx, id, l, RestoreOptions{Dir: tmp, Force: true, MonitorArgs: o.MonitorArgs})
	}
	os.RemoveAll(tmp)
	if err == nil {
		return nil
	}
	if o.MustResume {
		return fmt.Errorf("snapshot-switch %s: %w: switched, but its processes were not resumed: %w", id, ErrSnapshotSwitch, err)
	}
	m.opts.Warn(fmt.Sprintf("snapshot-switch %s: switched, but its processes were not resumed (the VE is stopped): %v", id, err))
	return nil
}

// snapshotSwitch switches the files and config and returns the snapshot's memory dump to
// resume from ("" for none).
func (m *Manager) snapshotSwitch(ctx context.Context, id string, o SwitchOptions) (string, error) {
	cfg, set, i, uuid, err := m.snapshotOf(id, o.UUID)
	if err != nil {
		return "", err
	}
	if i < 0 {
		return "", fmt.Errorf("%w: %w %s (see vectl snapshot-list %s)", ErrSnapshotSwitch, ErrNoSnapshot, uuid, id)
	}
	snap := set.Snapshots[i]
	dump := ""
	if snap.Dump && !o.SkipResume {
		dump = m.snapshotDump(id, uuid)
		if _, err := os.Stat(filepath.Join(dump, dumpMetaFile)); err != nil {
			dump = ""
		}
	}
	if o.MustResume && dump == "" {
		return "", fmt.Errorf("%w: snapshot %s has no memory dump to resume from (taken from a stopped VE, with --skip-suspend, or without criu)", ErrSnapshotSwitch, uuid)
	}
	next := *cfg
	if !o.SkipConfig && len(snap.Config) > 0 {
		old, err := store.ParseConfig(snap.Config)
		if err != nil {
			return "", fmt.Errorf("%w: the config kept in snapshot %s: %v", ErrSnapshotSwitch, uuid, err)
		}
		// What belongs to the VE now, not to its past: its id, name, range of ids and layout.
		old.ID, old.Name, old.UserNS, old.Layout, old.OSTemplate, old.Created = cfg.ID, cfg.Name, cfg.UserNS, cfg.Layout, cfg.OSTemplate, cfg.Created
		next = *old
		if len(next.IPs) > 0 {
			nc, err := m.netConfig()
			if err != nil {
				return "", err
			}
			ips, err := parseIPs(nc, next.IPs)
			if err != nil {
				return "", err
			}
			if err := m.checkIPsFree(id, ips); err != nil {
				return "", fmt.Errorf("%w: the snapshot's config: %w (use --skip-config)", ErrSnapshotSwitch, err)
			}
		}
	}
	if m.populated(id) {
		if err := m.stop(ctx, id, StopOptions{}); err != nil {
			return "", err
		}
	}
	if err := m.umountRoot(id); err != nil {
		return "", err
	}
	priv := m.store.PrivateDir(id)
	if cfg.Layout != LayoutOverlay {
		// A whole copy: it is copied back.
		if err := m.copyBack(id, cfg.Layout, m.layers().Tree(snap.Layer)); err != nil {
			return "", err
		}
		if err := m.store.SaveConfig(&next); err != nil {
			return "", err
		}
		return dump, m.switched(&next, set, uuid)
	}
	// The current upper goes; an empty one takes its place over the snapshot's layers.
	upper, old := filepath.Join(priv, "upper"), filepath.Join(priv, "upper.old")
	var st unix.Stat_t
	if err := unix.Lstat(upper, &st); err != nil {
		return "", err
	}
	os.RemoveAll(old)
	if err := os.Rename(upper, old); err != nil {
		return "", err
	}
	if err := os.Mkdir(upper, os.FileMode(st.Mode&0o777)); err != nil {
		os.Rename(old, upper)
		return "", err
	}
	os.Chmod(upper, os.FileMode(st.Mode&0o7777))
	os.Lchown(upper, int(st.Uid), int(st.Gid))
	next.Base = snap.Layer
	if err := m.store.SaveConfig(&next); err != nil {
		os.RemoveAll(upper)
		os.Rename(old, upper)
		return "", err
	}
	if err := m.switched(&next, set, uuid); err != nil {
		return "", err
	}
	errs := []error{os.RemoveAll(old), os.RemoveAll(filepath.Join(priv, "work", "work"))}
	errs = append(errs, m.collectLayers(id))
	return dump, errors.Join(errs...)
}

// switched records that a VE's files and config (cfg, saved) are snapshot uuid's now.
func (m *Manager) switched(cfg *Config, set *snapshotSet, uuid string) error {
	set.Current = uuid
	if err := m.saveSnapshots(cfg.ID, set); err != nil {
		return err
	}
	if err := m.syncVZConf(cfg, m.opts.Warn); err != nil {
		m.opts.Warn(fmt.Sprintf("VE %s: vzctl config not written: %v", cfg.ID, err))
	}
	return nil
}

// copyBack puts a copy or image VE's data back from a whole-copy snapshot's tree: rsync
// into the rootfs, or the image copied beside the VE's and renamed over it.
func (m *Manager) copyBack(id, lay, tree string) error {
	priv := m.store.PrivateDir(id)
	if lay == LayoutCopy {
		out, err := exec.Command("rsync", "-aHAXS", "--numeric-ids", "--delete", "--modify-window=-1", tree+"/", filepath.Join(priv, "rootfs")+"/").CombinedOutput()
		if err != nil {
			return fmt.Errorf("copy the snapshot back: %s", lastLine(out, err))
		}
		return nil
	}
	img := filepath.Join(priv, "root.img")
	out, err := exec.Command("cp", "--sparse=always", "--preserve=all", filepath.Join(tree, "root.img"), img+".new").CombinedOutput()
	if err != nil {
		os.Remove(img + ".new")
		return fmt.Errorf("copy the snapshot's image back: %s", lastLine(out, err))
	}
	return os.Rename(img+".new", img)
}

// SnapshotDelete removes a snapshot (vzctl snapshot-delete). Its layer stays while later
// snapshots, clones or the VE's current state build on it; a layer nothing names any more is
// merged into the one above it, or into the stopped VE's upper directory.
func (m *Manager) SnapshotDelete(ref, uuid string) error {
	return m.locked(ref, "snapshot-delete", func(id string) error { return m.snapshotDelete(id, uuid) })
}

func (m *Manager) snapshotDelete(id, uuid string) error {
	_, set, i, uuid, err := m.snapshotOf(id, uuid)
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("%w: %w %s (see vectl snapshot-list %s)", ErrSnapshotDelete, ErrNoSnapshot, uuid, id)
	}
	snap := set.Snapshots[i]
	if snap.Mount != "" && layout.Mounted(snap.Mount) {
		return fmt.Errorf("%w: snapshot %s is mounted on %s: vectl snapshot-umount %s --id %s first", ErrSnapshotDelete, uuid, snap.Mount, id, uuid)
	}
	set.Snapshots = slices.Delete(set.Snapshots, i, i+1)
	for j := range set.Snapshots {
		if set.Snapshots[j].Parent == uuid {
			set.Snapshots[j].Parent = snap.Parent
		}
	}
	if set.Current == uuid {
		set.Current = snap.Parent
	}
	if err := m.saveSnapshots(id, set); err != nil {
		return err
	}
	if err := os.RemoveAll(m.snapshotDump(id, uuid)); err != nil {
		return fmt.Errorf("snapshot %s deleted, but its memory dump stays: %w", uuid, err)
	}
	if err := m.collectLayers(id); err != nil {
		return fmt.Errorf("snapshot %s deleted, but its layer stays: %w", uuid, err)
	}
	return nil
}

// collectLayers removes the layers nothing needs any more and merges a layer nothing names
// into the single layer above it, or into VE self's upper directory when self is stopped,
// unmounted and the only one on it. It takes the global lock; the caller holds self's lock.
func (m *Manager) collectLayers(self string) error {
	glock, err := m.store.LockGlobal(m.opts.LockTimeout)
	if err != nil {
		return err
	}
	defer glock.Unlock()
	return m.collectLayersLocked(self)
}

// collectLayersLocked is collectLayers for a caller that holds the global lock.
func (m *Manager) collectLayersLocked(self string) error {
	pool := m.layers()
	all, err := pool.List()
	if err != nil || len(all) == 0 {
		return err
	}
	byID := map[string]layout.Layer{}
	for _, l := range all {
		byID[l.ID] = l
	}
	ids, err := m.store.IDs()
	if err != nil {
		return err
	}
	refs := map[string]int{} // layer: how many snapshots and VE states name it
	baseOf := map[string][]string{}
	inUse := map[string]bool{} // layers of mounted roots and snapshots: never changed
	busy := map[string]bool{}  // VEs with a layer being made
	use := func(top string) {
		for id := top; id != "" && !inUse[id]; id = byID[id].Parent {
			inUse[id] = true
		}
	}
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(m.store.VEDir(id), snapPendingFile)); err == nil || m.store.Incomplete(id) {
			busy[id] = true // a snapshot, clone or restore under way
		}
		cfg, err := m.store.LoadConfig(id)
		if err != nil {
			if m.store.Incomplete(id) {
				busy[id] = true
				continue
			}
			return err
		}
		if cfg.Base != "" {
			refs[cfg.Base]++
			baseOf[cfg.Base] = append(baseOf[cfg.Base], id)
			if id != self || layout.Mounted(m.store.RootDir(id)) || m.populated(id) {
				use(cfg.Base)
			}
		}
		set, err := m.loadSnapshots(id)
		if err != nil {
			return err
		}
		for _, s := range set.Snapshots {
			refs[s.Layer]++
			if s.Mount != "" && layout.Mounted(s.Mount) {
				use(s.Layer)
			}
		}
	}
	// Needed: named, or below a named one.
	needed := map[string]bool{}
	for id := range refs {
		for l := id; l != "" && !needed[l]; l = byID[l].Parent {
			needed[l] = true
		}
	}
	var errs []error
	for _, l := range all {
		// A layer without its description is one being made (or a leftover of a killed vectl).
		if !needed[l.ID] && !busy[l.VE] && !(l.VE == "" && time.Since(dirTime(filepath.Join(pool.Dir, l.ID))) < time.Hour) {
			errs = append(errs, pool.Remove(l.ID))
		}
	}
	// Merge unnamed layers into what builds on them, one at a time.
	for changed := true; changed; {
		changed = false
		children := map[string][]string{}
		for id := range needed {
			if p := byID[id].Parent; p != "" {
				children[p] = append(children[p], id)
			}
		}
		for id := range needed {
			l := byID[id]
			if refs[id] > 0 || inUse[id] || len(children[id]) != 1 {
				continue
			}
			c := byID[children[id][0]]
			if c.Owner != l.Owner {
				continue
			}
			if err := layout.Merge(pool.Tree(id), pool.Tree(c.ID)); err != nil {
				return errors.Join(append(errs, err)...)
			}
			c.Parent = l.Parent
			if err := pool.Save(c); err != nil {
				return errors.Join(append(errs, err)...)
			}
			byID[c.ID] = c
			delete(needed, id)
			errs = append(errs, pool.Remove(id))
			changed = true
			break
		}
	}
	// The VE's own base, when nothing else names it: into its upper.
	cfg, err := m.store.LoadConfig(self)
	if err != nil || cfg.Base == "" {
		return errors.Join(errs...)
	}
	b := cfg.Base
	hasChild := false
	for id := range needed {
		if byID[id].Parent == b {
			hasChild = true
		}
	}
	if refs[b] == 1 && len(baseOf[b]) == 1 && !inUse[b] && !hasChild && !busy[self] && byID[b].Owner == ownerOf(cfg) {
		if err := layout.Merge(pool.Tree(b), filepath.Join(m.store.PrivateDir(self), "upper")); err != nil {
			return errors.Join(append(errs, err)...)
		}
		cfg.Base = byID[b].Parent
		if err := m.store.SaveConfig(cfg); err != nil {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, pool.Remove(b))
	}
	return errors.Join(errs...)
}

func dirTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// SnapshotMount mounts a snapshot's files read-only on dir (vzctl snapshot-mount).
func (m *Manager) SnapshotMount(ref, uuid, dir string) error {
	return m.locked(ref, "snapshot-mount", func(id string) error { return m.snapshotMount(id, uuid, dir) })
}

func (m *Manager) snapshotMount(id, uuid, dir string) error {
	if dir == "" {
		return fmt.Errorf("%w: --target DIR is needed", ErrInvalidValue)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	cfg, set, i, uuid, err := m.snapshotOf(id, uuid)
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("%w %s (see vectl snapshot-list %s)", ErrNoSnapshot, uuid, id)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: --target %s is not a directory", ErrInvalidValue, dir)
	}
	if layout.Mounted(dir) {
		return fmt.Errorf("%w: %s is a mount point already", ErrInvalidValue, dir)
	}
	if p := set.Snapshots[i].Mount; p != "" && layout.Mounted(p) {
		return fmt.Errorf("%w: snapshot %s is mounted on %s already", ErrInvalidValue, uuid, p)
	}
	if cfg.Layout != LayoutOverlay {
		if err := m.mountFull(cfg, set.Snapshots[i].Layer, dir); err != nil {
			return err
		}
		set.Snapshots[i].Mount = dir
		return m.saveSnapshots(id, set)
	}
	layers, err := m.layerDirs(set.Snapshots[i].Layer)
	if err != nil {
		return err
	}
	a := m.area(cfg)
	a.Root, a.Layers, a.ReadOnly = dir, layers, true
	// The stage of a snapshot's mount must not meet the VE's own.
	a.Private = filepath.Join(m.opts.RunDir, "snapshot-stage", uuid)
	if err := os.MkdirAll(a.Private, 0o700); err != nil {
		return err
	}
	defer os.Remove(a.Private)
	if err := a.Mount(); err != nil {
		return err
	}
	set.Snapshots[i].Mount = dir
	if err := m.saveSnapshots(id, set); err != nil {
		return errors.Join(err, layout.Unmount(dir))
	}
	return nil
}

// mountFull mounts a copy or image VE's snapshot read-only on dir: its tree bound, or its
// image loop-mounted.
func (m *Manager) mountFull(cfg *Config, layer, dir string) error {
	tree := m.layers().Tree(layer)
	if cfg.Layout == LayoutImage {
		return layout.MountImageReadOnly(filepath.Join(tree, "root.img"), dir)
	}
	if err := unix.Mount(tree, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("%w: %v", ErrMount, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("%w: %v", ErrMount, err)
	}
	return nil
}

// SnapshotUmount unmounts what SnapshotMount mounted.
func (m *Manager) SnapshotUmount(ref, uuid string) error {
	return m.locked(ref, "snapshot-umount", func(id string) error {
		_, set, i, uuid, err := m.snapshotOf(id, uuid)
		if err != nil {
			return err
		}
		if i < 0 {
			return fmt.Errorf("%w %s", ErrNoSnapshot, uuid)
		}
		dir := set.Snapshots[i].Mount
		if dir == "" || !layout.Mounted(dir) {
			return fmt.Errorf("%w: snapshot %s is not mounted", ErrInvalidValue, uuid)
		}
		if err := layout.Unmount(dir); err != nil {
			return err
		}
		set.Snapshots[i].Mount = ""
		return m.saveSnapshots(id, set)
	})
}

// dropSnapshots forgets a VE's snapshots (destroy --force): mounted ones are unmounted; the
// layers go with collectLayers once the VE is gone.
func (m *Manager) dropSnapshots(id string) error {
	set, err := m.loadSnapshots(id)
	if err != nil {
		return err
	}
	for _, s := range set.Snapshots {
		if s.Mount != "" {
			if err := layout.Unmount(s.Mount); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(filepath.Dir(m.snapshotDump(id, "x")))
}
