package container

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/revert"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/template"
)

// A backup is one tar file (zstd-compressed unless --compress none): a manifest first
// (backupManifestName), then its parts, each with its size and sha256 in the manifest: the
// VE's config, one GNU tar per layer of an overlay VE's chain, its private data (the upper
// directory, the copy layout's rootfs or the image file) and, with --with-template, the
// template's archive. Parts are GNU tar so that owners, modes, ACLs, xattrs (the overlay's
// opaque marks among them), hard links, holes and the overlay's whiteouts survive.

const (
	backupManifestName = "vectl-backup.json"
	backupFormat       = 1
)

// ErrBackup means a backup or its restore failed, or the archive is not a sound vectl
// backup (exit 163).
var ErrBackup = errors.New("backup failed")

// BackupOptions control Backup.
type BackupOptions struct {
	File         string // the archive, or a directory to make it in
	Mode         string // stop, suspend or snapshot (a running VE; default snapshot)
	Compress     string // zstd (default) or none
	WithTemplate bool   // embed the template's archive
	// WithSnapshots keeps the VE's snapshots (their records and layers; not their memory
	// dumps).
	WithSnapshots bool
	// Progress, when set, is told the bytes of parts written so far and their total.
	Progress func(done, total int64)
	// Start starts a VE that --mode stop stopped again once its backup is made.
	Start StartOptions
}

type backupPart struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type backupManifest struct {
	Format   int       `json:"format"`
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Mode     string    `json:"mode"`
	Layout   string    `json:"layout"`
	Running  bool      `json:"running"`
	FrozenMs int64     `json:"frozen_ms"`
	Template struct {
		Name     string `json:"name"`
		SHA256   string `json:"sha256"`
		Embedded bool   `json:"embedded"`
	} `json:"template"`
	// Owner are the host uid and gid of the private data's ids 0.. (0, 0: privileged).
	Owner [2]uint32 `json:"owner"`
	// Layers are the overlay's layers under the private data, top first.
	Layers []layout.Layer `json:"layers,omitempty"`
	// SnapshotLayers are the other layers the snapshots in snapshots.json need.
	SnapshotLayers []layout.Layer `json:"snapshot_layers,omitempty"`
	// Dump: dump.tar holds the running VE's memory, dumped by CRIU in the frozen moment of
	// the final pass (--mode suspend).
	Dump  bool         `json:"dump,omitempty"`
	Parts []backupPart `json:"parts"`
}

// BackupReport says what Backup made.
type BackupReport struct {
	File     string `json:"file"`
	Size     int64  `json:"size"`
	Mode     string `json:"mode"`
	FrozenMs int64  `json:"frozen_ms"`
	// Stopped: --mode stop stopped the running VE for the backup.
	Stopped bool `json:"stopped,omitempty"`
}

// gnuTar makes (or, with extract, unpacks) a tree as the backup's parts hold it.
func gnuTar(ctx context.Context, extract bool, archive, dir string, members ...string) error {
	args := []string{"--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-C", dir}
	if extract {
		args = append(args, "--same-owner", "--same-permissions", "-xf", archive)
	} else {
		args = append(args, "--sparse", "-cf", archive)
		if len(members) == 0 {
			members = []string{"."}
		}
		args = append(args, members...)
	}
	out, err := exec.CommandContext(ctx, "tar", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tar %s: %s", dir, lastLine(out, err))
	}
	return nil
}

// Backup writes a VE's backup. A running VE is backed up while it runs and frozen only for
// the final pass (suspend, snapshot: the overlay's upper or the copy layout's rootfs is
// copied with rsync, then again frozen; an image is copied frozen), or stopped for the time
// of it and started again (stop). The archive appears under its final name only once
// complete.
//
// A VE whose monitor is a foreground vectl (a systemd unit's) is started again by that vectl
// after a backup in stop mode (a restart request, foreground.go), so that it stays in its unit.
func (m *Manager) Backup(ctx context.Context, ref string, o BackupOptions) (rep *BackupReport, err error) {
	var ve string
	var fg *foreground
	defer func() { fg.close() }()
	err = m.locked(ref, "backup", func(id string) error {
		ve = id
		if o.Mode == "stop" {
			if fg = m.foregroundMonitor(id); fg != nil {
				if err := m.askRestart(id, fg); err != nil {
					return err
				}
			}
		}
		rep, err = m.backup(ctx, id, &o)
		return err
	})
	restarted := rep != nil && rep.Stopped
	if fg != nil && !restarted {
		os.Remove(m.restartFile(ve)) // the VE was not stopped: its monitor goes on
	}
	if restarted {
		var serr error
		if fg != nil {
			serr = m.restartOrStart(ctx, ve, fg, o.Start)
		} else {
			serr = m.Start(ctx, ve, o.Start)
		}
		if serr != nil {
			err = errors.Join(err, fmt.Errorf("backup %s: the VE stopped for it did not start again: %w", ve, serr))
		}
	}
	return rep, err
}

func (m *Manager) backup(ctx context.Context, id string, o *BackupOptions) (rep *BackupReport, err error) {
	switch o.Mode {
	case "":
		o.Mode = "snapshot"
	case "stop", "suspend", "snapshot":
	default:
		return nil, fmt.Errorf("%w: --mode %q: use stop, suspend or snapshot", ErrInvalidValue, o.Mode)
	}
	switch o.Compress {
	case "":
		o.Compress = "zstd"
	case "zstd", "none":
	default:
		return nil, fmt.Errorf("%w: --compress %q: use zstd or none", ErrInvalidValue, o.Compress)
	}
	cfg, err := m.loadComplete(id)
	if err != nil {
		return nil, err
	}
	if cfg.Layout == LayoutOverlay {
		if err := m.finishPending(cfg); err != nil {
			return nil, err
		}
	}
	file := o.File
	if file == "" {
		return nil, fmt.Errorf("%w: name the backup FILE or a directory", ErrInvalidValue)
	}
	if st, err := os.Stat(file); err == nil && st.IsDir() {
		ext := ".tar.zst"
		if o.Compress == "none" {
			ext = ".tar"
		}
		file = filepath.Join(file, fmt.Sprintf("vectl-backup-%s-%s%s", id, time.Now().UTC().Format("20060102-150405"), ext))
	} else if err == nil {
		return nil, fmt.Errorf("%w: %s exists: the backup never overwrites a file", ErrInvalidValue, file)
	}
	if file, err = filepath.Abs(file); err != nil {
		return nil, err
	}
	info, err := m.templates.Get(cfg.OSTemplate)
	if err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(file), "."+filepath.Base(file)+".parts-")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBackup, err)
	}
	defer os.RemoveAll(stage)

	man := backupManifest{Format: backupFormat, ID: id, Created: time.Now().UTC().Truncate(time.Second), Mode: o.Mode,
		Layout: cfg.Layout, Owner: ownerOf(cfg)}
	man.Template.Name, man.Template.SHA256, man.Template.Embedded = info.Name, info.SHA256, o.WithTemplate
	running := m.populated(id)
	man.Running = running
	var parts []string // files in stage, in archive order
	addPart := func(name string) { parts = append(parts, name) }

	data, err := os.ReadFile(m.store.ConfigPath(id))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	addPart("config.json")
	addLayer := func(l layout.Layer) error {
		name := "layer-" + l.ID + ".tar"
		if err := gnuTar(ctx, false, filepath.Join(stage, name), m.layers().Tree(l.ID)); err != nil {
			return fmt.Errorf("%w: %v", ErrBackup, err)
		}
		addPart(name)
		return nil
	}
	have := map[string]bool{}
	if cfg.Layout == LayoutOverlay {
		chain, err := m.layers().Chain(cfg.Base)
		if err != nil {
			return nil, err
		}
		man.Layers = chain
		for _, l := range chain {
			if err := addLayer(l); err != nil {
				return nil, err
			}
			have[l.ID] = true
		}
	}
	if o.WithSnapshots {
		set, err := m.loadSnapshots(id)
		if err != nil {
			return nil, err
		}
		for i := range set.Snapshots {
			set.Snapshots[i].Mount, set.Snapshots[i].Dump = "", false
			chain, err := m.layers().Chain(set.Snapshots[i].Layer)
			if err != nil {
				return nil, err
			}
			for _, l := range chain {
				if have[l.ID] {
					continue
				}
				have[l.ID] = true
				man.SnapshotLayers = append(man.SnapshotLayers, l)
				if err := addLayer(l); err != nil {
					return nil, err
				}
			}
		}
		data, err := json.MarshalIndent(set, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(stage, snapshotsFile), data, 0o600); err != nil {
			return nil, err
		}
		addPart(snapshotsFile)
	}
	if running && o.Mode == "stop" {
		if err := m.stop(ctx, id, StopOptions{}); err != nil {
			return nil, err
		}
		// Backup starts it again once the lock is let go, whatever happens here.
		defer func() {
			if rep == nil {
				rep = &BackupReport{}
			}
			rep.Stopped = true
		}()
		running = false
	}
	priv := m.store.PrivateDir(id)
	src, member := priv, ""
	switch cfg.Layout {
	case LayoutOverlay:
		src = filepath.Join(priv, "upper")
	case LayoutCopy:
		src = filepath.Join(priv, "rootfs")
	case LayoutImage:
		member = "root.img"
	}
	if running {
		copyDir := filepath.Join(stage, "private")
		// suspend, as vzdump's: the memory too, dumped by CRIU in the same frozen moment
		// (not for a user-namespace VE of the copy or image layout, see snapshot).
		var inFreeze func() error
		dumpDir := filepath.Join(stage, "dump")
		if _, cerr := m.criu(); cerr == nil && o.Mode == "suspend" && (cfg.Layout == LayoutOverlay || cfg.UserNS == nil) {
			prepared := m.prepareDump(id)
			inFreeze = func() error {
				if err := m.checkpoint(ctx, id, CheckpointOptions{Dir: dumpDir, LeaveRunning: true, keepFrozen: true, prepared: prepared}); err != nil {
					m.opts.Warn(fmt.Sprintf("backup %s: its memory was not dumped, the backup holds files and config: %v", id, err))
					os.RemoveAll(dumpDir)
					return nil
				}
				man.Dump = true
				return nil
			}
		}
		var frozen time.Duration
		if cfg.Layout == LayoutImage {
			frozen, err = m.copyImage(ctx, id, filepath.Join(priv, member), filepath.Join(copyDir, member), true, inFreeze)
		} else {
			frozen, err = m.copyUpper(ctx, id, src, copyDir, true, inFreeze)
		}
		if err == nil && man.Dump {
			if err = gnuTar(ctx, false, filepath.Join(stage, "dump.tar"), dumpDir); err == nil {
				addPart("dump.tar")
				os.RemoveAll(dumpDir)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBackup, err)
		}
		man.FrozenMs = frozen.Milliseconds()
		src = copyDir
	} else if cfg.Layout == LayoutImage {
		src = priv
	}
	var members []string
	if member != "" {
		members = []string{member}
	}
	if err := gnuTar(ctx, false, filepath.Join(stage, "private.tar"), src, members...); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBackup, err)
	}
	os.RemoveAll(filepath.Join(stage, "private"))
	addPart("private.tar")
	if o.WithTemplate {
		if err := os.Symlink(m.templates.ArchivePath(info), filepath.Join(stage, "template")); err != nil {
			return nil, err
		}
		addPart("template")
	}
	if err := writeBackup(file, stage, parts, &man, *o); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBackup, err)
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	return &BackupReport{File: file, Size: st.Size(), Mode: o.Mode, FrozenMs: man.FrozenMs}, nil
}

// writeBackup writes the archive: manifest first, then the parts with their sizes and
// sha256 (hashed while they are copied in; the manifest's are checked after), to file.tmp,
// renamed to file once complete.
func writeBackup(file, stage string, parts []string, man *backupManifest, o BackupOptions) (err error) {
	var total int64
	for _, p := range parts {
		st, err := os.Stat(filepath.Join(stage, p))
		if err != nil {
			return err
		}
		h := sha256.New()
		f, err := os.Open(filepath.Join(stage, p))
		if err != nil {
			return err
		}
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if n != st.Size() {
			return fmt.Errorf("part %s changed while it was read", p)
		}
		man.Parts = append(man.Parts, backupPart{Name: p, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
		total += n
	}
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var zw *zstd.Encoder
	if o.Compress == "zstd" {
		if zw, err = zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest)); err != nil {
			return err
		}
		w = zw
	}
	tw := tar.NewWriter(w)
	mdata, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: backupManifestName, Mode: 0o600, Size: int64(len(mdata)), ModTime: man.Created, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(mdata); err != nil {
		return err
	}
	var done int64
	for _, p := range man.Parts {
		if err := tw.WriteHeader(&tar.Header{Name: p.Name, Mode: 0o600, Size: p.Size, ModTime: man.Created, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		in, err := os.Open(filepath.Join(stage, p.Name))
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, &progressReader{r: in, done: &done, total: total, fn: o.Progress})
		in.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := os.Stat(file); err == nil {
		return fmt.Errorf("%s appeared meanwhile", file)
	}
	return os.Rename(tmp, file)
}

type progressReader struct {
	r     io.Reader
	done  *int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	*p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(*p.done, p.total)
	}
	return n, err
}

// RestoreBackupOptions control RestoreBackup.
type RestoreBackupOptions struct {
	File string
	ID   string // the new VE's id (default: the backed-up VE's)
}

// RestoreBackup makes a VE from a backup on this node. Every part is checked against the
// manifest's size and sha256 before anything is made; the template must be here with the
// sha256 the backup names, or embedded in it (it is then imported). Restored under another
// id, the VE gets no name or addresses of the original's (they are the original's); a
// user-namespace VE gets a range of its own. On error nothing of it is left.
func (m *Manager) RestoreBackup(ctx context.Context, o RestoreBackupOptions) (_ *Config, err error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(m.opts.Root, ".restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	man, err := readBackup(o.File, stage)
	if err != nil {
		return nil, fmt.Errorf("backup-restore %s: %w", o.File, err)
	}
	data, err := os.ReadFile(filepath.Join(stage, "config.json"))
	if err != nil {
		return nil, err
	}
	old, err := store.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("backup-restore %s: %w: its config: %v", o.File, ErrBackup, err)
	}
	id := o.ID
	if id == "" {
		id = man.ID
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if m.store.Exists(id) {
		return nil, fmt.Errorf("backup-restore: VE %s %w (restore under another id: backup-restore FILE NEWID)", id, ErrExist)
	}
	if err := m.restoreTemplate(ctx, man, stage); err != nil {
		return nil, fmt.Errorf("backup-restore %s: %w", o.File, err)
	}
	copt := CreateOptions{ID: id, OSTemplate: old.OSTemplate, Layout: old.Layout, Hostname: old.Hostname,
		Description: old.Description, Limits: old.Resources, UserNS: old.UserNS != nil, Nesting: old.Nesting}
	if id == man.ID {
		copt.Name, copt.IPs = old.Name, old.IPs
	} else if len(old.IPs) > 0 || old.Name != "" {
		m.opts.Warn(fmt.Sprintf("backup-restore: VE %s is restored without the name and addresses of VE %s (set them with vectl set)", id, man.ID))
	}
	cfg, vlock, err := m.reserve(copt)
	if err != nil {
		return nil, err
	}
	defer vlock.Unlock()
	r := &revert.Reverter{}
	defer r.Fail(&err)
	r.Add(func() error { return m.removeVE(cfg.ID, vlock) })

	next := adoptConfig(old, cfg, id == man.ID)
	priv := m.store.PrivateDir(id)
	if err := os.Mkdir(priv, 0o700); err != nil {
		return nil, err
	}
	privTar := filepath.Join(stage, "private.tar")
	if len(man.SnapshotLayers) > 0 && old.Layout != LayoutOverlay {
		if err := m.restoreLayers(ctx, id, man, stage, r); err != nil {
			return nil, fmt.Errorf("backup-restore: %w: %v", ErrBackup, err)
		}
	}
	switch old.Layout {
	case LayoutOverlay:
		if err := m.restoreLayers(ctx, id, man, stage, r); err != nil {
			return nil, fmt.Errorf("backup-restore: %w: %v", ErrBackup, err)
		}
		if len(man.Layers) > 0 {
			next.Base = man.Layers[0].ID
		}
		upper := filepath.Join(priv, "upper")
		if err := os.Mkdir(upper, 0o755); err != nil {
			return nil, err
		}
		if err := gnuTar(ctx, true, privTar, upper); err != nil {
			return nil, fmt.Errorf("backup-restore: %w: %v", ErrBackup, err)
		}
		if err := os.Mkdir(filepath.Join(priv, "work"), 0o700); err != nil {
			return nil, err
		}
		if to := ownerOf(&next); to != man.Owner {
			if err := idmap.Shift(upper, man.Owner[0], man.Owner[1], to[0], to[1]); err != nil {
				return nil, fmt.Errorf("backup-restore: %w: the private data's owners: %v", ErrBackup, err)
			}
		}
	case LayoutCopy:
		rootfs := filepath.Join(priv, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return nil, err
		}
		if err := gnuTar(ctx, true, privTar, rootfs); err != nil {
			return nil, fmt.Errorf("backup-restore: %w: %v", ErrBackup, err)
		}
	case LayoutImage:
		if err := gnuTar(ctx, true, privTar, priv); err != nil {
			return nil, fmt.Errorf("backup-restore: %w: %v", ErrBackup, err)
		}
	default:
		return nil, fmt.Errorf("backup-restore: %w: unknown layout %q", ErrBackup, old.Layout)
	}
	if err := m.store.SaveConfig(&next); err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(filepath.Join(stage, snapshotsFile)); err == nil {
		if err := store.WriteFileAtomic(filepath.Join(m.store.VEDir(id), snapshotsFile), data, 0o600); err != nil {
			return nil, err
		}
	}
	if man.Dump {
		// The VE comes back suspended: vectl restore (or start) resumes it where it was. Only
		// under its own id: the dump holds its addresses and host name.
		if id != man.ID {
			m.opts.Warn(fmt.Sprintf("backup-restore: the memory dump of VE %s is not used for VE %s (restored stopped)", man.ID, id))
		} else if err := m.unpackDump(ctx, id, filepath.Join(stage, "dump.tar"), r); err != nil {
			return nil, fmt.Errorf("backup-restore: %w: the memory dump: %v", ErrBackup, err)
		}
	}
	if err := m.store.FinishCreate(id); err != nil {
		return nil, err
	}
	if err := m.syncVZConf(&next, m.opts.Warn); err != nil {
		m.opts.Warn(fmt.Sprintf("VE %s: vzctl config not written: %v", id, err))
	}
	return &next, nil
}

// unpackDump unpacks a backup's memory dump as the VE's chkpnt dump, so that the VE is
// suspended with it.
func (m *Manager) unpackDump(ctx context.Context, id, part string, r *revert.Reverter) error {
	dir := m.DumpDir(id)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	r.Add(func() error { return os.RemoveAll(dir) })
	if err := gnuTar(ctx, true, part, dir); err != nil {
		return err
	}
	// The private data it goes with is the one just unpacked: the dump is as sound as one
	// chkpnt made of a VE that then went down.
	meta, err := readDumpMeta(dir)
	if err != nil {
		return err
	}
	if meta.Private, err = m.privateDigest(id); err != nil {
		return err
	}
	meta.LeaveRunning = false
	if err := writeDumpMeta(dir, meta, true); err != nil {
		return err
	}
	data, _ := json.Marshal(map[string]string{"dir": dir})
	return store.WriteFileAtomic(filepath.Join(m.store.VEDir(id), dumpPointerFile), append(data, '\n'), 0o600)
}

// readBackup unpacks a backup's parts into stage, checking the manifest (first) and then
// every part's size and sha256 against it; a part missing, extra or altered, or an archive
// cut short, is refused.
func readBackup(file, stage string) (*backupManifest, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBackup, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(4); bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrBackup, err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	bad := func(format string, a ...any) (*backupManifest, error) {
		return nil, fmt.Errorf("%w: not a sound vectl backup: %s", ErrBackup, fmt.Sprintf(format, a...))
	}
	hdr, err := tr.Next()
	if err != nil || hdr.Name != backupManifestName || hdr.Size > 1<<24 {
		return bad("no manifest (%s) at its start (%v)", backupManifestName, err)
	}
	mdata, err := io.ReadAll(tr)
	if err != nil {
		return bad("the manifest: %v", err)
	}
	var man backupManifest
	if err := json.Unmarshal(mdata, &man); err != nil {
		return bad("the manifest: %v", err)
	}
	if man.Format != backupFormat {
		return bad("format %d (this vectl reads %d)", man.Format, backupFormat)
	}
	want := map[string]backupPart{}
	for _, p := range man.Parts {
		if p.Name == "" || strings.ContainsAny(p.Name, "/\x00") || p.Name == "." || p.Name == ".." || p.Name == backupManifestName {
			return bad("part name %q", p.Name)
		}
		want[p.Name] = p
	}
	got := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return bad("cut short or corrupt after %d of %d parts: %v", len(got), len(want), err)
		}
		p, ok := want[hdr.Name]
		if !ok || got[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			return bad("unexpected member %q", hdr.Name)
		}
		out, err := os.OpenFile(filepath.Join(stage, hdr.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, h), tr)
		out.Close()
		if err != nil {
			return bad("part %s cut short or corrupt: %v", hdr.Name, err)
		}
		if n != p.Size || hex.EncodeToString(h.Sum(nil)) != p.SHA256 {
			return bad("part %s does not match its sha256 in the manifest (altered or cut short)", hdr.Name)
		}
		got[hdr.Name] = true
	}
	for name := range want {
		if !got[name] {
			return bad("part %s is missing (cut short?)", name)
		}
	}
	for _, l := range append(append([]layout.Layer(nil), man.Layers...), man.SnapshotLayers...) {
		if !got["layer-"+l.ID+".tar"] || !uuidRE().MatchString(l.ID) {
			return bad("layer %q has no part", l.ID)
		}
	}
	if man.Dump && !got["dump.tar"] {
		return bad("no dump.tar")
	}
	if !got["config.json"] || !got["private.tar"] {
		return bad("no config or private data")
	}
	return &man, nil
}

// restoreTemplate makes sure the backup's template is here as it was: the same sha256, or
// imported from the backup.
func (m *Manager) restoreTemplate(ctx context.Context, man *backupManifest, stage string) error {
	info, err := m.templates.Get(man.Template.Name)
	if err == nil {
		if info.SHA256 != man.Template.SHA256 {
			return fmt.Errorf("%w: template %s here (sha256 %.12s) is not the one the backup was made on (%.12s)",
				template.ErrVerify, man.Template.Name, info.SHA256, man.Template.SHA256)
		}
		_, err = m.unpackedTemplate(ctx, man.Template.Name) // downloaded here, not used yet
		return err
	}
	if !man.Template.Embedded {
		return fmt.Errorf("%w: template %s (sha256 %.12s) is not on this node: import it, or back up with --with-template",
			template.ErrNotFound, man.Template.Name, man.Template.SHA256)
	}
	info, err = m.ImportTemplate(ctx, filepath.Join(stage, "template"), man.Template.Name)
	if err != nil {
		return err
	}
	if info.SHA256 != man.Template.SHA256 {
		return fmt.Errorf("%w: the embedded template %s has sha256 %.12s, not %.12s", template.ErrVerify, info.Name, info.SHA256, man.Template.SHA256)
	}
	return nil
}

// restoreLayers puts an overlay backup's layers into the pool; one that is there already
// (layers never change) is kept.
func (m *Manager) restoreLayers(ctx context.Context, id string, man *backupManifest, stage string, r *revert.Reverter) error {
	pool := m.layers()
	all := append(append([]layout.Layer(nil), man.SnapshotLayers...), man.Layers...)
	for i := len(all) - 1; i >= 0; i-- {
		l := all[i]
		l.VE = id // the VE being restored: incomplete, so its layers are not collected meanwhile
		if _, err := pool.Load(l.ID); err == nil {
			continue
		}
		tree := pool.Tree(l.ID)
		if err := os.MkdirAll(tree+".new", 0o755); err != nil {
			return err
		}
		if err := gnuTar(ctx, true, filepath.Join(stage, "layer-"+l.ID+".tar"), tree+".new"); err != nil {
			pool.Remove(l.ID)
			return err
		}
		if err := pool.Save(l); err != nil {
			pool.Remove(l.ID)
			return err
		}
		if err := os.Rename(tree+".new", tree); err != nil {
			pool.Remove(l.ID)
			return err
		}
		r.Add(func() error { return pool.Remove(l.ID) })
	}
	return nil
}
