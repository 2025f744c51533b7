package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/template"
)

// The destination's side of a migration (vectl migrate-in, run by the source over ssh).

// migrateMarker, in a VE's directory, marks a VE that a migration is bringing in: until the
// commit finishes, an abort removes it whole.
const migrateMarker = "migrating"

// migrateRequest is what the source sends to migrate-in prepare (on stdin, JSON).
type migrateRequest struct {
	Version        int             `json:"version"`
	Config         json.RawMessage `json:"config"`
	Template       string          `json:"template"`
	TemplateSHA256 string          `json:"template_sha256"`
	Online         bool            `json:"online"`
	DryRun         bool            `json:"dry_run,omitempty"`
	Kernel         string          `json:"kernel"`
	CriuVersion    int             `json:"criu_version,omitempty"`
	CPUInfo        []byte          `json:"cpuinfo,omitempty"`
	// NestedMounts: a process of the VE is in a mount namespace of its own.
	NestedMounts bool `json:"nested_mounts,omitempty"`
	// Snapshots is the VE's snapshots.json; Layers: the VE brings snapshot or clone layers.
	Snapshots json.RawMessage `json:"snapshots,omitempty"`
	Layers    bool            `json:"layers,omitempty"`
}

// migrateReply tells the source where to copy to.
type migrateReply struct {
	Version      int    `json:"version"`
	Private      string `json:"private"`
	Dump         string `json:"dump"`
	Incoming     string `json:"incoming"`
	NeedTemplate bool   `json:"need_template"`
	// Layers is where the VE's layers go (this node's ROOT/layers).
	Layers string `json:"layers,omitempty"`
	// LazyPages: this vectl serves migrate --lazy (migrate-in pages).
	LazyPages bool `json:"lazy_pages,omitempty"`
}

func (m *Manager) incomingDir(id string) string { return filepath.Join(m.opts.Root, "incoming", id) }

// PrepareMigration checks that a VE can come to this node and, unless it is a dry run,
// reserves it (its config, its id range, an empty private area), marked as migrating.
func (m *Manager) PrepareMigration(ctx context.Context, id string, in io.Reader) ([]byte, error) {
	var req migrateRequest
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return nil, migrateErr(MigrateUsage, "migrate-in prepare: read the request: %v", err)
	}
	if req.Version != MigrateProtocol {
		return nil, migrateErr(MigrateCriuVer, "migration protocol %d here, %d on the source: use the same vectl on both nodes",
			MigrateProtocol, req.Version)
	}
	cfg, err := store.ParseConfig(req.Config)
	if err != nil {
		return nil, withCode(MigrateConfig, err)
	}
	if cfg.ID != id {
		return nil, migrateErr(MigrateUsage, "the request is for VE %s, not %s", cfg.ID, id)
	}
	if err := m.init(); err != nil {
		return nil, err
	}
	if req.Online {
		if err := m.checkRestoreHere(req); err != nil {
			return nil, err
		}
	}
	glock, err := m.store.LockGlobal(m.opts.LockTimeout)
	if err != nil {
		return nil, withCode(MigrateLocked, err)
	}
	defer glock.Unlock()
	if m.store.Exists(id) {
		if !m.isMigrating(id) {
			return nil, migrateErr(MigrateExists, "VE %s already exists on this node", id)
		}
		// What an interrupted migration left (its guard could not reach this node).
		if err := m.abortMigration(id, m.opts.LockTimeout); err != nil {
			return nil, withCode(MigrateExists, fmt.Errorf("VE %s is left from an unfinished migration and cannot be removed: %w", id, err))
		}
	}
	if cfg.Name != "" {
		if owner, err := m.resolve(cfg.Name); err == nil {
			return nil, migrateErr(MigrateConfig, "name %q is taken by VE %s on this node", cfg.Name, owner)
		}
	}
	var ips []netip.Prefix
	for _, s := range cfg.IPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, migrateErr(MigrateConfig, "the VE's address %q: %v", s, err)
		}
		ips = append(ips, p)
	}
	if err := m.checkIPsFree(id, ips); err != nil {
		return nil, withCode(MigrateIPInUse, err)
	}
	reply := migrateReply{Version: MigrateProtocol, Private: m.store.PrivateDir(id), Dump: m.DumpDir(id),
		Incoming: m.incomingDir(id), Layers: m.layers().Dir, LazyPages: true}
	if info, err := m.templates.Get(req.Template); errors.Is(err, template.ErrNotFound) {
		reply.NeedTemplate = true
	} else if err != nil {
		return nil, withCode(MigrateConfig, err)
	} else if info.SHA256 != req.TemplateSHA256 {
		return nil, migrateErr(MigrateConfig, "template %s differs on this node (sha256 %s, the source's %s): import the source's under another name",
			req.Template, info.SHA256, req.TemplateSHA256)
	} else if _, err := m.unpackedTemplate(ctx, req.Template); err != nil {
		return nil, withCode(MigrateConfig, err) // downloaded here, not used yet
	}
	if cfg.UserNS != nil {
		held, err := m.store.IDMaps()
		if err != nil {
			return nil, err
		}
		for _, h := range held {
			if overlaps(h.UID, cfg.UserNS.UID, cfg.UserNS.Size) || overlaps(h.GID, cfg.UserNS.GID, cfg.UserNS.Size) {
				return nil, migrateErr(MigrateConfig, "the VE's ids (%s) overlap those of another VE on this node", cfg.UserNS)
			}
		}
	}
	if req.DryRun {
		return json.Marshal(reply)
	}
	vlock, err := m.store.LockVE(id, m.opts.LockTimeout)
	if err != nil {
		return nil, withCode(MigrateLocked, err)
	}
	defer vlock.Unlock()
	if cfg.UserNS != nil {
		if err := m.store.ClaimIDMap(id, *cfg.UserNS); err != nil {
			return nil, err
		}
	}
	err = m.store.Reserve(cfg)
	if err == nil {
		err = os.WriteFile(filepath.Join(m.store.VEDir(id), migrateMarker), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600)
	}
	for _, dir := range []string{m.store.PrivateDir(id), reply.Incoming, filepath.Dir(reply.Dump), reply.Layers} {
		if err == nil {
			err = os.MkdirAll(dir, 0o700)
		}
	}
	if err == nil && len(req.Snapshots) > 0 {
		var set snapshotSet
		if err = json.Unmarshal(req.Snapshots, &set); err == nil {
			err = m.saveSnapshots(id, &set)
		}
	}
	if err != nil {
		return nil, errors.Join(err, m.removeVE(id, vlock), os.RemoveAll(reply.Incoming))
	}
	return json.Marshal(reply)
}

func overlaps(a, b, size uint32) bool { return a < b+size && b < a+size }

// checkRestoreHere checks that a dump made on the source can be restored on this node.
func (m *Manager) checkRestoreHere(req migrateRequest) error {
	tool, err := m.criu()
	if err != nil {
		return withCode(MigrateNoCriu, err)
	}
	if k := kernelRelease(); k != req.Kernel {
		return migrateErr(MigrateCriuVer, "this node runs kernel %s, the source %s: a dump is restored only on the kernel it was made on (migrate offline)",
			k, req.Kernel)
	}
	if tool.Version < req.CriuVersion {
		return migrateErr(MigrateCriuVer, "criu here is older (%d) than the source's (%d)", tool.Version, req.CriuVersion)
	}
	if req.NestedMounts && !tool.NestedMounts {
		return migrateErr(MigrateCriuVer, "a process of the VE is in a mount namespace of its own, which criu here (%s) cannot restore: install vectl's build (make criu)", tool.Path)
	}
	dir, err := os.MkdirTemp("", "vectl-cpuinfo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "cpuinfo.img"), req.CPUInfo, 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(tool.Path, "cpuinfo", "check", "-D", dir).CombinedOutput(); err != nil {
		return migrateErr(MigrateCPU, "this node's CPU lacks features the VE's processes may use (criu cpuinfo check: %s)", lastLine(out, err))
	}
	return nil
}

func (m *Manager) isMigrating(id string) bool {
	_, err := os.Stat(filepath.Join(m.store.VEDir(id), migrateMarker))
	return err == nil
}

// CommitMigration makes an incoming VE this node's: its template (if it came along) is
// imported, and the VE is restored from the dump in restoreDir, or started (start), or left
// stopped. Until this returns the VE stays marked as migrating, so that an abort removes it.
func (m *Manager) CommitMigration(ctx context.Context, id, restoreDir string, dump io.Reader, start bool, monitorArgs []string) error {
	id, l, err := m.lock(id)
	if err != nil {
		return withCode(MigrateStartDest, err)
	}
	if !m.isMigrating(id) {
		l.Unlock()
		return migrateErr(MigrateExists, "VE %s is not being migrated here", id)
	}
	cfg, err := m.store.LoadConfig(id)
	if err == nil && dump != nil {
		if restoreDir != m.DumpDir(id) {
			err = fmt.Errorf("the dump goes to %s only", m.DumpDir(id))
		} else if err = receiveDump(restoreDir, dump); err != nil {
			err = withCode(MigrateCopy, err)
		} else if meta, merr := readDumpMeta(restoreDir); merr == nil && meta.Lazy {
			err = awaitLazyPages(restoreDir)
		}
	}
	if err == nil {
		err = m.importIncoming(ctx, id, cfg.OSTemplate)
	}
	if err == nil {
		err = m.store.FinishCreate(id)
	}
	if err == nil {
		if serr := m.syncVZConf(cfg, m.opts.Warn); serr != nil {
			m.opts.Warn(fmt.Sprintf("VE %s: vzctl config not written: %v", id, serr))
		}
	}
	if err == nil && migrateFault("restore") {
		err = fmt.Errorf("%w: fault injected (%s=restore)", ErrRestore, migrateFaultEnv)
	}
	if err != nil {
		l.Unlock()
		return withCode(MigrateStartDest, err)
	}
	switch {
	case restoreDir != "":
		err = m.restore(ctx, id, l, RestoreOptions{Dir: restoreDir, Force: true, MonitorArgs: monitorArgs, cpuChecked: true})
	case start:
		l.Unlock()
		err = m.Start(ctx, id, StartOptions{MonitorArgs: monitorArgs})
	default:
		l.Unlock()
	}
	if err != nil {
		return withCode(MigrateStartDest, err)
	}
	return os.Remove(filepath.Join(m.store.VEDir(id), migrateMarker))
}

// importIncoming imports the template archive the source sent, if any, and checks it.
func (m *Manager) importIncoming(ctx context.Context, id, name string) error {
	dir := m.incomingDir(id)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), name+".") {
			continue
		}
		if _, err := m.templates.Get(name); err == nil {
			break // another migration brought it meanwhile
		}
		if _, err := m.ImportTemplate(ctx, filepath.Join(dir, e.Name()), name); err != nil {
			return withCode(MigrateCopy, fmt.Errorf("import template %s: %w", name, err))
		}
		break
	}
	return os.RemoveAll(dir)
}

// AbortMigration removes a VE that a migration was bringing in, whatever state it got to.
// It prints "committed" instead when the VE is no longer migrating (the commit finished:
// the VE is this node's), "aborted" otherwise.
func (m *Manager) AbortMigration(id string) (string, error) {
	if err := m.init(); err != nil {
		return "", err
	}
	if !m.store.Exists(id) {
		os.RemoveAll(m.incomingDir(id))
		return "aborted", nil
	}
	// A commit in progress holds the lock until its restore or start is done.
	l, err := m.store.LockVE(id, 3*time.Minute)
	if err != nil {
		return "", withCode(MigrateLocked, err)
	}
	l.Unlock()
	if !m.isMigrating(id) {
		if m.store.Exists(id) {
			return "committed", nil
		}
		return "aborted", nil
	}
	glock, err := m.store.LockGlobal(m.opts.LockTimeout)
	if err != nil {
		return "", withCode(MigrateLocked, err)
	}
	defer glock.Unlock()
	if err := m.abortMigration(id, m.opts.LockTimeout); err != nil {
		return "", err
	}
	return "aborted", nil
}

// abortMigration removes an incoming VE (the caller holds the global lock).
func (m *Manager) abortMigration(id string, timeout time.Duration) error {
	l, err := m.store.LockVE(id, timeout)
	if err != nil {
		return err
	}
	if !m.isMigrating(id) {
		l.Unlock()
		return nil
	}
	if m.populated(id) {
		if err := m.killAll(id, 10*time.Second); err != nil {
			l.Unlock()
			return err
		}
	}
	if m.leftovers(id) {
		if err := m.teardown(id, false); err != nil {
			l.Unlock()
			return err
		}
	}
	errs := []error{os.RemoveAll(m.DumpDir(id)), os.RemoveAll(m.DumpDir(id) + ".new"), os.RemoveAll(m.incomingDir(id)),
		os.RemoveAll(filepath.Dir(m.snapshotDump(id, "x")))}
	if err := m.removeVE(id, l); err != nil {
		errs = append(errs, err)
	}
	// The layers copied for it, unless another VE here uses them.
	errs = append(errs, m.collectLayersLocked(id))
	l.Unlock()
	return errors.Join(errs...)
}

// The files of a lazy dump's directory on the destination: lazyReceived says the dump is
// all there (migrate-in pages waits for it), lazySocket is the lazy-pages daemon's (the
// restore waits for it).
const (
	lazyReceived = ".received"
	lazySocket   = "lazy-pages.socket"
	lazyLog      = "lazy-pages.log"
	lazyWait     = 60 * time.Second
)

// awaitLazyPages marks a lazy dump received and waits until migrate-in pages has started its
// lazy-pages daemon there.
func awaitLazyPages(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, lazyReceived), nil, 0o600); err != nil {
		return err
	}
	if !waitFor(filepath.Join(dir, lazySocket), lazyWait) {
		return migrateErr(MigrateStartDest, "no lazy-pages daemon in %s after %s (migrate-in pages did not start it; see %s)",
			dir, lazyWait, filepath.Join(dir, lazyLog))
	}
	return nil
}

func waitFor(path string, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		} else if time.Now().After(end) {
			return false
		}
	}
}

// ServeLazyPages runs on the destination of migrate --lazy: once the VE's dump is here, it
// starts CRIU's lazy-pages daemon in the dump's directory, which hands the restored VE its
// memory page by page as it touches it and fetches the rest in the background. The
// daemon's page-server connection is in and out, which the source relays to its CRIU's
// page server (over the migration's ssh connection). It returns when every page moved, and
// then removes the dump.
func (m *Manager) ServeLazyPages(ctx context.Context, id string, in io.Reader, out io.Writer) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	dir := m.DumpDir(id)
	tool, err := m.criu()
	if err != nil {
		return err
	}
	for end := time.Now().Add(lazyWait); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, lazyReceived)); err == nil {
			break
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) || time.Now().After(end) {
			// The commit failed, or an abort removed the dump.
			return fmt.Errorf("migrate-in pages %s: no dump arrived in %s", id, dir)
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "page-server"), os.NewFile(uintptr(fds[1]), "page-server")
	defer mine.Close()
	cmd := exec.Command(tool.Path, "lazy-pages", "--page-server", "--ps-socket", "3", "-D", dir, "-o", lazyLog, fmt.Sprintf("-v%d", m.criuLogLevel()))
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return err
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	srcGone := make(chan struct{})
	go func() {
		io.Copy(mine, in)
		unix.Shutdown(fds[0], unix.SHUT_WR)
		close(srcGone)
	}()
	go io.Copy(out, mine)
	select {
	case err = <-ended:
	case <-srcGone:
		// The source ended the transfer: a daemon that has not ended with it never will.
		select {
		case err = <-ended:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			err = errors.Join(errors.New("the source ended the transfer"), <-ended)
		}
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, lazyLog))
		return fmt.Errorf("migrate-in pages %s: criu lazy-pages: %s (log in %s)", id, criuReason(log, err.Error()), filepath.Join(dir, lazyLog))
	}
	return os.RemoveAll(dir)
}
