package container

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vectl/vectl/container/store"
)

// Migration follows vzmigrate: the source vectl drives, the destination's vectl is reached
// with ssh and runs the hidden command migrate-in (prepare, commit, abort). The private area
// and the dump travel with rsync over the same ssh connection (one multiplexed master).
//
//	online:  preflight, copy (VE running), dump (frozen from here), transfer (final sync and
//	         the dump), restore on the destination (frozen until here), cleanup of the source
//	offline: preflight, copy, stop, transfer, start on the destination, cleanup
//
// A failure before the destination runs the VE removes what was made there and brings the
// source back (restore from its dump, or start). A guard process (migrate-guard) does the
// same when the migrating vectl dies (SIGKILL): it waits for the end of a pipe the migrating
// vectl holds and reads the journal the migration keeps in RUNDIR/migrate/ID.json.

// MigrateProtocol is the version of the exchange between the source's migrate and the
// destination's migrate-in; both must speak the same.
const MigrateProtocol = 1

// The exit statuses of migrate and migrate-in are vzmigrate's (its manual's EXIT STATUS).
const (
	MigrateUsage      = 1  // bad command line
	MigrateConnect    = 4  // can't connect to the destination
	MigrateCopy       = 6  // copying the private area (or the dump, or the template) failed
	MigrateStartDest  = 7  // can't start or restore the VE on the destination
	MigrateStopSource = 8  // can't stop or checkpoint the source VE
	MigrateExists     = 9  // the VE already exists on the destination
	MigrateNotExist   = 10 // no such VE on the source
	MigrateIPInUse    = 12 // an address of the VE is in use on the destination
	MigrateNoCriu     = 14 // the destination cannot checkpoint/restore (no usable criu)
	MigrateConfig     = 15 // the VE's settings cannot be applied on the destination
	MigrateCriuVer    = 17 // incompatible criu or kernel on the destination
	MigrateCPU        = 18 // the destination's CPU lacks features the VE may use
	MigrateLocked     = 20 // the VE is locked by another vectl
)

// MigrateError carries a migration failure with its vzmigrate exit status.
type MigrateError struct {
	Code int
	Err  error
}

func (e *MigrateError) Error() string { return e.Err.Error() }
func (e *MigrateError) Unwrap() error { return e.Err }

func migrateErr(code int, format string, args ...any) error {
	return &MigrateError{Code: code, Err: fmt.Errorf(format, args...)}
}

// withCode gives err a migration exit status unless it has one.
func withCode(code int, err error) error {
	var me *MigrateError
	if err == nil || errors.As(err, &me) {
		return err
	}
	if errors.Is(err, store.ErrLocked) {
		code = MigrateLocked
	}
	return &MigrateError{Code: code, Err: err}
}

// MigrateOptions control Migrate.
type MigrateOptions struct {
	Host        string   // [user@]host of the destination
	SSH         []string // extra ssh options
	RemoteVectl string   // command line of vectl on the destination, with its global flags
	Online      bool     // checkpoint and restore instead of stop and start
	KeepSrc     bool     // keep the source VE (stopped, its dump dropped) after success
	// Lazy (with Online): post-copy. The VE is restored on the destination without its
	// memory, which follows page by page (CRIU's lazy pages): the frozen time does not grow
	// with the VE's memory. Until the last page has moved the VE lives on both nodes: losing
	// the source or the link then loses it.
	Lazy   bool
	DryRun bool // preflight only
	// Self runs this binary with the same global options (argv without a command): the
	// guard and the source's own monitor are started from it.
	Self []string
	// MonitorArgs runs this binary's monitor (for a restore or start of the source).
	MonitorArgs []string
	// Progress receives a line per phase as it ends (nil: none).
	Progress io.Writer
}

// MigratePhase is the duration of one phase of a migration.
type MigratePhase struct {
	Name string `json:"name"`
	Ms   int64  `json:"ms"`
}

// MigrateReport says what a migration did and how long each part took.
type MigrateReport struct {
	ID     string         `json:"id"`
	Host   string         `json:"host"`
	Online bool           `json:"online"`
	DryRun bool           `json:"dry_run,omitempty"`
	Phases []MigratePhase `json:"phases"`
	// FrozenMs is how long the VE ran nowhere: online, from the start of the dump to the
	// end of the restore; offline, from the stop to the end of the start (0 for a VE that
	// was not running).
	FrozenMs int64 `json:"frozen_ms"`
	TotalMs  int64 `json:"total_ms"`
	// Lazy: the memory moved after the restore (post-copy); PagesMs is how long that took
	// after the VE ran on the destination.
	Lazy    bool  `json:"lazy,omitempty"`
	PagesMs int64 `json:"pages_ms,omitempty"`
}

// migrateJournal is what the guard needs to undo a migration its vectl did not finish.
type migrateJournal struct {
	ID          string   `json:"id"`
	Host        string   `json:"host"`
	SSH         []string `json:"ssh"`
	RemoteVectl string   `json:"remote_vectl"`
	Online      bool     `json:"online"`
	KeepSrc     bool     `json:"keep_src"`
	WasRunning  bool     `json:"was_running"`
	MonitorArgs []string `json:"monitor_args"`
	Dump        string   `json:"dump,omitempty"`
	// LazyPort is the port of the lazy dump's page server (migrate --lazy).
	LazyPort int `json:"lazy_port,omitempty"`
	// Phase is the phase under way: preflight, copy, dump, stop, transfer, restore, start,
	// cleanup; "done" once the migration finished or was undone.
	Phase string `json:"phase"`
}

// Fault injection for the tests of the rollback (as CRIU_FAULT is for criu):
// VECTL_MIGRATE_FAULT=PHASE kills the migrating vectl with SIGKILL as PHASE begins, or
// (on the destination) =restore makes the restore there fail.
const migrateFaultEnv = "VECTL_MIGRATE_FAULT"

func migrateFault(phase string) bool { return os.Getenv(migrateFaultEnv) == phase }

func (m *Manager) migrateDir() string { return filepath.Join(m.opts.RunDir, "migrate") }
func (m *Manager) journalPath(id string) string {
	return filepath.Join(m.migrateDir(), id+".json")
}

// migrationUnderway returns the destination of a migration of VE id that is under way or
// being undone by its guard ("" if none): until it ends, other vectl invocations leave the
// VE alone. The journal is in the run directory, so a host reboot clears it.
func (m *Manager) migrationUnderway(id string) string {
	data, err := os.ReadFile(m.journalPath(id))
	if err != nil {
		return ""
	}
	var j migrateJournal
	if json.Unmarshal(data, &j) != nil || j.Phase == "done" {
		return ""
	}
	return j.Host
}

// migration is one migration in progress on the source.
type migration struct {
	m       *Manager
	o       MigrateOptions
	j       migrateJournal
	r       *remote
	dest    migrateReply
	report  MigrateReport
	started time.Time
	phaseAt time.Time
	frozen  time.Time
	guarded bool // the guard runs: the journal is kept
	// layers are the snapshot and clone layers the VE needs (copied once: they never change).
	layers       []string
	layersCopied bool
}

func (g *migration) phase(name string) {
	g.endPhase()
	g.j.Phase = name
	g.phaseAt = time.Now()
	g.saveJournal()
	if migrateFault(name) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
}

func (g *migration) endPhase() {
	if g.j.Phase == "" || g.phaseAt.IsZero() {
		return
	}
	ms := time.Since(g.phaseAt).Milliseconds()
	g.report.Phases = append(g.report.Phases, MigratePhase{Name: g.j.Phase, Ms: ms})
	if g.o.Progress != nil {
		fmt.Fprintf(g.o.Progress, "%-9s %6d ms\n", g.j.Phase, ms)
	}
	g.phaseAt = time.Time{}
}

func (g *migration) saveJournal() {
	if !g.guarded {
		return
	}
	// Replaced atomically for the guard and other vectl commands, never synced: the journal
	// lives in the run directory, which no reboot keeps, and the phases of the frozen time
	// are written while the destination fills the disk with the final pass.
	data, _ := json.Marshal(g.j)
	if os.MkdirAll(g.m.migrateDir(), 0o700) == nil {
		store.ReplaceFile(g.m.journalPath(g.j.ID), data, 0o600)
	}
}

// Migrate moves a VE to another node (vzmigrate). See the comment at the top of this file.
func (m *Manager) Migrate(ctx context.Context, ref string, o MigrateOptions) (*MigrateReport, error) {
	id, err := m.resolve(ref)
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			return nil, withCode(MigrateNotExist, err)
		}
		return nil, withCode(MigrateUsage, err)
	}
	if !m.store.Exists(id) {
		return nil, migrateErr(MigrateNotExist, "migrate %s: %w", id, ErrNotExist)
	}
	if host := m.migrationUnderway(id); host != "" {
		return nil, migrateErr(MigrateLocked, "migrate %s: a migration of this VE to %s is under way or was interrupted (its guard undoes it; see %s)",
			id, host, m.journalPath(id))
	}
	m.migrating = id
	running := m.populated(id)
	if m.Suspended(id) {
		return nil, migrateErr(MigrateStopSource, "migrate %s: the VE is suspended (restore it first, or start it with --skip-restore)", id)
	}
	if m.frozen(id) {
		return nil, migrateErr(MigrateStopSource, "migrate %s: the VE is frozen (thaw it first)", id)
	}
	g := &migration{m: m, o: o, started: time.Now(), r: newRemote(o.Host, o.SSH, o.RemoteVectl, m.migrateDir(), id),
		report: MigrateReport{ID: id, Host: o.Host, Online: o.Online && running, DryRun: o.DryRun},
		j: migrateJournal{ID: id, Host: o.Host, SSH: o.SSH, RemoteVectl: o.RemoteVectl, Online: o.Online && running,
			KeepSrc: o.KeepSrc, WasRunning: running, MonitorArgs: o.MonitorArgs}}
	defer g.r.close()
	err = g.run(ctx)
	g.endPhase()
	g.report.TotalMs = time.Since(g.started).Milliseconds()
	if err != nil {
		return &g.report, fmt.Errorf("migrate %s to %s: %w", id, o.Host, err)
	}
	return &g.report, nil
}

func (g *migration) run(ctx context.Context) (err error) {
	m, id := g.m, g.j.ID
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return withCode(MigrateNotExist, err)
	}
	g.phase("preflight")
	req := migrateRequest{Version: MigrateProtocol, Online: g.j.Online, DryRun: g.o.DryRun, Kernel: kernelRelease()}
	if req.Config, err = json.Marshal(cfg); err != nil {
		return err
	}
	info, err := m.templates.Get(cfg.OSTemplate)
	if err != nil {
		return withCode(MigrateConfig, fmt.Errorf("the VE's template: %w", err))
	}
	req.Template, req.TemplateSHA256 = info.Name, info.SHA256
	// Snapshots and the layers of snapshots and clones go with the VE (vzmigrate takes a
	// ploop VE's snapshots along too).
	set, err := m.loadSnapshots(id)
	if err != nil {
		return withCode(MigrateConfig, err)
	}
	if len(set.Snapshots) > 0 {
		for i := range set.Snapshots {
			set.Snapshots[i].Mount = ""
		}
		if req.Snapshots, err = json.Marshal(set); err != nil {
			return err
		}
	}
	if g.layers, err = m.neededLayers(cfg, set); err != nil {
		return withCode(MigrateConfig, err)
	}
	req.Layers = len(g.layers) > 0
	if g.o.Lazy && !g.o.Online {
		return migrateErr(MigrateUsage, "--lazy is a kind of online migration: pass --online too")
	}
	if g.o.Lazy && g.j.Online && cfg.UserNS != nil {
		return migrateErr(MigrateStopSource, "--lazy: VE %s runs in its own user namespace, where the kernel lets no restored task make a userfaultfd (that needs CAP_SYS_PTRACE in the host's namespace): migrate it with --online alone, or make it privileged (set --userns no --save)", id)
	}
	if g.j.Online {
		tool, err := m.criu()
		if err != nil {
			return withCode(MigrateStopSource, err)
		}
		req.CriuVersion, req.CPUInfo = tool.Version, tool.CPUInfo
		// The destination's criu must restore what this one dumps.
		nested := m.nestedMounts(id)
		req.NestedMounts = nested != nil
		if nested != nil && !tool.NestedMounts {
			return withCode(MigrateStopSource, nested)
		}
	}
	if err := g.r.open(ctx); err != nil {
		return err
	}
	body, _ := json.Marshal(req)
	out, err := g.r.vectl(ctx, bytes.NewReader(body), "migrate-in", "prepare", id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, &g.dest); err != nil {
		return migrateErr(MigrateConnect, "the destination's vectl answered %q: %v (is it a vectl that knows migrate-in, protocol %d?)",
			strings.TrimSpace(string(out)), err, MigrateProtocol)
	}
	if req.Layers && g.dest.Layers == "" {
		return migrateErr(MigrateConfig, "the VE has snapshots or builds on a clone's layers, and the destination's vectl does not take layers: update it")
	}
	if g.o.Lazy && g.j.Online && !g.dest.LazyPages {
		return migrateErr(MigrateCriuVer, "the destination's vectl does not take lazy migrations: update it, or migrate with --online alone")
	}
	if g.o.DryRun {
		return nil
	}
	// From here the destination holds a reservation: any failure removes it, and brings the
	// source back if it was taken down. The guard does the same if this vectl dies.
	stopGuard, err := g.startGuard()
	if err != nil {
		g.r.vectl(context.Background(), nil, "migrate-in", "abort", id)
		return err
	}
	defer func() {
		g.endPhase()
		if err != nil && g.j.Phase != "cleanup" {
			_, rerr := g.rollback(context.Background())
			err = errors.Join(err, rerr)
		}
		g.j.Phase = "done"
		os.Remove(m.journalPath(id))
		stopGuard()
	}()

	// Online, the commit's ssh session (it receives the dump on its stdin and restores it)
	// opens first: the connection and the remote shell's start-up overlap the copy, and are
	// neither part of the frozen time nor competing with the dump for the CPU.
	var commitWait func() ([]byte, error)
	var dumpTo *io.PipeWriter
	if g.j.Online {
		pr, pw := io.Pipe()
		defer pw.Close()
		dumpTo = pw
		if commitWait, err = g.r.startVectl(ctx, pr, "migrate-in", "commit", id, "--restore", g.dest.Dump, "--dump-stdin"); err != nil {
			return withCode(MigrateConnect, err)
		}
		defer func() {
			if commitWait != nil {
				// A commit still waiting for the dump gets a broken stream and ends.
				pw.CloseWithError(errors.New("migration abandoned"))
				commitWait()
			}
		}()
	}
	g.phase("copy")
	var prepared preparedDump
	if g.j.Online {
		prepared = m.prepareDump(id) // while the private area is copied
	}
	if g.dest.NeedTemplate {
		if err := g.r.rsync(ctx, []string{m.templates.ArchivePath(info)}, g.dest.Incoming+"/"); err != nil {
			return withCode(MigrateCopy, fmt.Errorf("copy template %s: %w", info.Name, err))
		}
	}
	if err := g.syncPrivate(ctx, g.j.WasRunning); err != nil {
		return err
	}
	if g.j.Online && g.o.Lazy {
		g.phase("dump")
		g.frozen = time.Now()
		g.j.Dump = m.DumpDir(id)
		g.saveJournal()
		if err := g.lazy(ctx, commitWait, dumpTo, prepared); err != nil {
			return err
		}
		commitWait = nil
		g.phase("cleanup")
		return g.cleanupSource()
	}
	// Online, once the dump is complete the VE's teardown here, the dump's way to the
	// destination and the final pass run side by side (the last two share the connection);
	// the stream's last entry, which lets the commit there go on (with the VE's addresses),
	// waits for the other two.
	synced := make(chan error, 1)
	var final chan error
	if g.j.Online {
		g.phase("dump")
		g.frozen = time.Now()
		g.j.Dump = m.DumpDir(id)
		g.saveJournal()
		err := m.Checkpoint(ctx, id, CheckpointOptions{Dir: g.j.Dump, prepared: prepared, dumped: func(dir string) {
			go func() { dumpTo.CloseWithError(sendDump(dir, dumpTo, synced)) }()
			final = make(chan error, 1)
			go func() { final <- g.syncPrivate(ctx, false) }()
		}})
		if err != nil {
			if final != nil {
				<-final
			}
			synced <- err
			return withCode(MigrateStopSource, err)
		}
	} else if g.j.WasRunning {
		g.phase("stop")
		g.frozen = time.Now()
		if err := m.Stop(ctx, id, StopOptions{}); err != nil {
			return withCode(MigrateStopSource, err)
		}
	}
	g.phase("transfer")
	if final != nil {
		err = <-final
	} else {
		err = g.syncPrivate(ctx, false)
	}
	synced <- err
	if err != nil {
		return err
	}
	if g.j.Online {
		g.phase("restore")
		_, err := commitWait()
		commitWait = nil
		if err != nil {
			return withCode(MigrateStartDest, err)
		}
	} else {
		args := []string{"migrate-in", "commit", id}
		if g.j.WasRunning {
			g.phase("start")
			args = append(args, "--start")
		} else {
			g.phase("register")
		}
		if _, err := g.r.vectl(ctx, nil, args...); err != nil {
			return withCode(MigrateStartDest, err)
		}
	}
	if !g.frozen.IsZero() {
		g.report.FrozenMs = time.Since(g.frozen).Milliseconds()
	}
	g.phase("cleanup")
	return g.cleanupSource()
}

// lazy is the frozen part of a post-copy migration: a lazy dump here; from the moment its
// page server listens, the final copy of the private area, the dump (without the memory)
// to the destination and its restore there, while migrate-in pages there relays its
// lazy-pages daemon to the page server here over ssh; then the wait for the last page.
func (g *migration) lazy(ctx context.Context, commitWait func() ([]byte, error), dumpTo *io.PipeWriter, prepared preparedDump) error {
	m, id := g.m, g.j.ID
	port, err := freePort()
	if err != nil {
		return withCode(MigrateStopSource, err)
	}
	g.j.LazyPort = port
	g.saveJournal()
	var pagesWait func() ([]byte, error)
	var conn net.Conn
	var restored time.Time
	lz := &lazyDump{port: port}
	lz.ready = func(dir string) (err error) {
		defer func() {
			if err != nil && conn != nil {
				// Shut down, the socket is the pages session's too: CRIU's page server sees
				// its connection end early, fails the transfer and resumes the VE here, and
				// the session ends.
				conn.(*net.TCPConn).CloseRead()
				conn.(*net.TCPConn).CloseWrite()
			}
		}()
		if conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err != nil {
			return withCode(MigrateStopSource, fmt.Errorf("connect to criu's page server: %w", err))
		}
		// ssh gets the socket itself as stdin and stdout: no copying here, and its end
		// (the last page moved) leaves conn the one reference to close.
		f, err := conn.(*net.TCPConn).File()
		if err != nil {
			return withCode(MigrateStopSource, err)
		}
		pagesWait, err = g.r.startVectlIO(ctx, f, f, "migrate-in", "pages", id)
		f.Close()
		if err != nil {
			return withCode(MigrateConnect, err)
		}
		g.phase("transfer")
		if err := g.syncPrivate(ctx, false); err != nil {
			return err
		}
		g.phase("restore")
		go func() { dumpTo.CloseWithError(sendDump(dir, dumpTo, nil)) }()
		if _, err := commitWait(); err != nil {
			return withCode(MigrateStartDest, err)
		}
		lz.restored, restored = true, time.Now()
		g.report.FrozenMs = restored.Sub(g.frozen).Milliseconds()
		g.phase("pages")
		_, err = pagesWait()
		// CRIU's page server ends its session once this side of the connection closes.
		conn.Close()
		if err != nil {
			return withCode(MigrateCopy, fmt.Errorf("move the memory: %w", err))
		}
		return nil
	}
	err = m.Checkpoint(ctx, id, CheckpointOptions{Dir: g.j.Dump, lazy: lz, prepared: prepared})
	if conn != nil {
		conn.Close()
		if pagesWait != nil {
			pagesWait()
		}
	}
	g.report.Lazy = true
	if !restored.IsZero() {
		g.report.PagesMs = time.Since(restored).Milliseconds()
	}
	if err == nil {
		return nil
	}
	if lz.restored {
		// The destination runs the VE without all of its memory, while CRIU resumed the
		// intact one here: the rollback removes the copy there.
		return withCode(MigrateCopy, err)
	}
	return withCode(MigrateStopSource, err)
}

// rollbackLazy undoes or finishes a lazy migration that failed after its dump began. Until
// the destination runs the VE, its copy there goes first (which also ends migrate-in pages
// there, and so the page server's connection here): CRIU then resumes the VE here. Once the
// destination runs it, it depends on whether every page moved: then the migration is
// finished, else the incomplete copy there goes and the VE runs on here.
func (g *migration) rollbackLazy(ctx context.Context) (finished bool, _ error) {
	if g.j.Phase != "pages" {
		out, err := g.r.vectl(ctx, nil, "migrate-in", "abort", g.j.ID)
		if err == nil && strings.TrimSpace(string(out)) == "committed" {
			g.j.Phase = "pages" // it runs there
		} else {
			var errs []error
			if err != nil {
				errs = append(errs, fmt.Errorf("remove the VE's copy on %s (vectl migrate-in abort %s there): %w", g.j.Host, g.j.ID, err))
			}
			g.settleLazy()
			if err := g.m.resumeSource(ctx, g.j); err != nil {
				errs = append(errs, err)
			}
			return false, errors.Join(errs...)
		}
	}
	if !g.settleLazy() {
		// Every page moved, and CRIU ended the VE here.
		g.j.Phase = "cleanup"
		return true, g.cleanupSource()
	}
	g.r.vectl(ctx, nil, "stop", g.j.ID, "--fast")
	if _, err := g.r.vectl(ctx, nil, "destroy", g.j.ID); err != nil {
		return false, fmt.Errorf("remove the VE's incomplete copy on %s (vectl destroy %s there): %w", g.j.Host, g.j.ID, err)
	}
	return false, nil
}

// settleLazy waits, in the rollback of a lazy migration, until no criu holds the VE's tasks
// here any more: it either resumed them (the transfer failed: the VE runs here) or killed
// them (every page moved: the VE runs there). Before the destination runs the VE, a
// connection to the page server that closes at once ends a transfer that waits for its
// first one. It says whether the VE runs here.
func (g *migration) settleLazy() bool {
	traced := func() bool {
		pid, ok := readPidFile(g.m.runFile(g.j.ID, initPidFile))
		if !ok {
			return false
		}
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		v := statusField(string(data), "TracerPid")
		return v != "" && v != "0"
	}
	for end := time.Now().Add(10 * time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		refused := true
		if g.j.Phase != "pages" {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.j.LazyPort), time.Second); err == nil {
				c.Close()
				refused = false
			}
		}
		if refused && !traced() {
			break
		}
	}
	return g.m.populated(g.j.ID)
}

// freePort is a TCP port of the loopback that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncPrivate copies the VE's private area to the destination (rsync: hard links, ACLs,
// extended attributes (overlayfs' own included), numeric ids, holes). live: the VE runs
// meanwhile, so files it removes while they are copied are no failure (rsyncVanished);
// the pass made with the VE stopped or frozen copies what is there then.
func (g *migration) syncPrivate(ctx context.Context, live bool) error {
	src := g.m.store.PrivateDir(g.j.ID) + "/"
	if err := g.r.rsync(ctx, []string{src}, g.dest.Private+"/", "--delete"); err != nil && !(live && rsyncVanished(err)) {
		return withCode(MigrateCopy, fmt.Errorf("copy the private area: %w", err))
	}
	if g.layersCopied {
		return nil
	}
	// Layers never change, and neither do the snapshots' memory dumps: once is enough.
	if len(g.layers) > 0 {
		var srcs []string
		for _, l := range g.layers {
			srcs = append(srcs, filepath.Join(g.m.layers().Dir, l))
		}
		if err := g.r.rsync(ctx, srcs, g.dest.Layers+"/"); err != nil {
			return withCode(MigrateCopy, fmt.Errorf("copy the snapshot layers: %w", err))
		}
	}
	dumps := filepath.Dir(g.m.snapshotDump(g.j.ID, "x"))
	if _, err := os.Stat(dumps); err == nil {
		if err := g.r.rsync(ctx, []string{dumps}, filepath.Dir(g.dest.Dump)+"/"); err != nil {
			return withCode(MigrateCopy, fmt.Errorf("copy the snapshots' memory dumps: %w", err))
		}
	}
	g.layersCopied = true
	return nil
}

// cleanupSource removes the migrated VE from this node, or with KeepSrc leaves it stopped.
func (g *migration) cleanupSource() error {
	if g.j.KeepSrc {
		return g.m.DropDump(g.j.ID)
	}
	// The destination runs the VE now: a failure here is reported, never undone.
	if err := g.m.Destroy(context.Background(), g.j.ID, true); err != nil {
		return fmt.Errorf("the VE runs on %s; removing it here failed (remove it with vectl destroy %s): %w", g.j.Host, g.j.ID, err)
	}
	return nil
}

// rollback undoes an unfinished migration: the destination's reservation goes (unless the
// destination already runs the VE, in which case the migration is finished instead), and the
// source VE runs again if it ran before.
func (g *migration) rollback(ctx context.Context) (finished bool, _ error) {
	switch g.j.Phase {
	case "done":
		return false, nil
	case "cleanup":
		return true, g.cleanupSource()
	}
	if g.j.LazyPort != 0 && g.j.Phase != "preflight" && g.j.Phase != "copy" {
		return g.rollbackLazy(ctx)
	}
	out, err := g.r.vectl(ctx, nil, "migrate-in", "abort", g.j.ID)
	if err == nil && strings.TrimSpace(string(out)) == "committed" {
		// The destination finished the restore or start before this vectl learned of it.
		g.j.Phase = "cleanup"
		return true, g.cleanupSource()
	}
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("remove the VE's copy on %s (vectl migrate-in abort %s there): %w", g.j.Host, g.j.ID, err))
	}
	if err := g.m.resumeSource(ctx, g.j); err != nil {
		errs = append(errs, err)
	}
	return false, errors.Join(errs...)
}

// resumeSource brings the source VE back after a failed migration: restored from its dump,
// or started when its restore fails or it was stopped for an offline migration.
func (m *Manager) resumeSource(ctx context.Context, j migrateJournal) error {
	if !j.WasRunning || m.populated(j.ID) {
		return nil
	}
	if j.Online && m.Suspended(j.ID) {
		rerr := m.Restore(ctx, j.ID, RestoreOptions{MonitorArgs: j.MonitorArgs})
		if rerr == nil {
			return nil
		}
		if err := m.DropDump(j.ID); err != nil {
			return errors.Join(rerr, err)
		}
		if err := m.Start(ctx, j.ID, StartOptions{MonitorArgs: j.MonitorArgs}); err != nil {
			return errors.Join(rerr, err)
		}
		return fmt.Errorf("the source VE could not be restored, and was started afresh: %w", rerr)
	}
	if err := m.Start(ctx, j.ID, StartOptions{MonitorArgs: j.MonitorArgs}); err != nil {
		return fmt.Errorf("start the source VE again: %w", err)
	}
	return nil
}

// startGuard starts this binary's migrate-guard for the migration: it waits until the pipe
// to this process closes (whatever ends it) and then undoes the migration unless its journal
// says it is done. The returned function ends the guard's wait.
func (g *migration) startGuard() (func(), error) {
	g.guarded = true
	g.saveJournal()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	logf, err := os.OpenFile(filepath.Join(g.m.migrateDir(), g.j.ID+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		w.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(g.o.Self[0], append(g.o.Self[1:], "migrate-guard", g.j.ID)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		g.guarded = false
		os.Remove(g.m.journalPath(g.j.ID))
		return nil, fmt.Errorf("start the migration's guard: %w", err)
	}
	go cmd.Wait()
	return func() { w.Close() }, nil
}

// GuardMigration is the migrate-guard: it reads stdin to its end (the migrating vectl holds
// the other end of that pipe), then undoes the VE's migration if its journal is unfinished.
func (m *Manager) GuardMigration(ctx context.Context, id string, stdin io.Reader) error {
	io.Copy(io.Discard, stdin)
	data, err := os.ReadFile(m.journalPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var j migrateJournal
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("%s: %w", m.journalPath(id), err)
	}
	if j.Phase == "done" {
		os.Remove(m.journalPath(id))
		return nil
	}
	m.migrating = id
	fmt.Fprintf(os.Stderr, "%s: the migration of VE %s to %s ended in phase %s\n",
		time.Now().Format(time.RFC3339), id, j.Host, j.Phase)
	g := &migration{m: m, j: j, r: newRemote(j.Host, j.SSH, j.RemoteVectl, m.migrateDir(), id)}
	defer g.r.close()
	finished, err := g.rollback(ctx)
	os.Remove(m.journalPath(id))
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "failed: %v\n", err)
	case finished:
		fmt.Fprintf(os.Stderr, "finished: VE %s runs on %s and was removed here\n", id, j.Host)
	default:
		fmt.Fprintf(os.Stderr, "undone: VE %s is back as it was\n", id)
	}
	return err
}

// sendDump writes the files of a dump directory to w as a tar stream (receiveDump reads it).
// The entry that ends the stream waits for ready, if given, and is not written when ready
// gives an error (receiveDump then refuses the stream).
func sendDump(dir string, w io.Writer, ready <-chan error) error {
	tw := tar.NewWriter(w)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink != 0 {
			continue // the images link a user-namespace restore made (criuInUserNS)
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("dump %s: %s is not a regular file", dir, e.Name())
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: int64(st.Mode().Perm()), Size: st.Size(), Typeflag: tar.TypeReg})
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	if ready != nil {
		if err := <-ready; err != nil {
			return err
		}
	}
	// The last entry says the stream is complete: a stream cut short is refused.
	if err := tw.WriteHeader(&tar.Header{Name: dumpStreamEnd, Mode: 0o600, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	return tw.Close()
}

// dumpStreamEnd names the entry that ends a dump's tar stream.
const dumpStreamEnd = ".end"

// receiveDump makes dir (anew) from the tar stream sendDump wrote: regular files only.
func receiveDump(dir string, r io.Reader) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return errors.New("receive the dump: the stream ended early (the source gave up)")
		}
		if err != nil {
			return fmt.Errorf("receive the dump: %w", err)
		}
		if h.Name == dumpStreamEnd {
			return nil
		}
		if h.Typeflag != tar.TypeReg || h.Name != filepath.Base(h.Name) || h.Name == "." || h.Name == ".." {
			return fmt.Errorf("receive the dump: unexpected entry %q", h.Name)
		}
		f, err := os.OpenFile(filepath.Join(dir, h.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(h.Mode)&0o700)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("receive the dump: %w", err)
		}
	}
}

// remote runs commands on the destination through one multiplexed ssh connection.
type remote struct {
	host    string
	opts    []string // ssh options, ours first
	command string   // the destination's vectl
	sock    string
}

func newRemote(host string, extra []string, vectl, dir, id string) *remote {
	if vectl == "" {
		vectl = "vectl"
	}
	sock := filepath.Join(dir, id+".ssh")
	opts := []string{"-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPath=" + sock,
		"-o", "ControlPersist=30s", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5"}
	return &remote{host: host, opts: append(opts, extra...), command: vectl, sock: sock}
}

// open checks that ssh reaches the destination without asking anything.
func (r *remote) open(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(r.sock), 0o700); err != nil {
		return err
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		return migrateErr(MigrateCopy, "rsync is not installed on this node (apt-get install rsync)")
	}
	out, err := r.ssh(ctx, nil, "command -v rsync >/dev/null || echo no-rsync")
	if err != nil {
		return migrateErr(MigrateConnect, "ssh %s: %v (ssh must log in without a password or a question: keys, known host)", r.host, err)
	}
	if strings.TrimSpace(string(out)) == "no-rsync" {
		return migrateErr(MigrateCopy, "rsync is not installed on %s", r.host)
	}
	return nil
}

// close ends the ssh master connection.
func (r *remote) close() {
	if _, err := os.Stat(r.sock); err == nil {
		exec.Command("ssh", append(append([]string{}, r.opts...), "-O", "exit", r.host)...).Run()
	}
}

func (r *remote) ssh(ctx context.Context, stdin io.Reader, command string) ([]byte, error) {
	wait, err := r.start(ctx, stdin, nil, command)
	if err != nil {
		return nil, err
	}
	return wait()
}

// start starts command on the destination; wait returns its output once it ended.
func (r *remote) start(ctx context.Context, stdin io.Reader, stdout io.Writer, command string) (wait func() ([]byte, error), _ error) {
	cmd := exec.CommandContext(ctx, "ssh", append(append(append([]string{}, r.opts...), r.host, "--"), command)...)
	var out, errb bytes.Buffer
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() ([]byte, error) {
		if err := cmd.Wait(); err != nil {
			msg := lastLine(errb.Bytes(), err)
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() != 255 {
				return out.Bytes(), &remoteError{code: ee.ExitCode(), msg: msg}
			}
			return out.Bytes(), migrateErr(MigrateConnect, "ssh %s: %s", r.host, msg)
		}
		return out.Bytes(), nil
	}, nil
}

// remoteError is a failure of a command on the destination: its exit status (a vzmigrate
// one for migrate-in) and its last line.
type remoteError struct {
	code int
	msg  string
}

func (e *remoteError) Error() string { return "on the destination: " + e.msg }

// vectl runs the destination's vectl with args; a failure keeps its exit status.
func (r *remote) vectl(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	wait, err := r.startVectl(ctx, stdin, args...)
	if err != nil {
		return nil, err
	}
	return wait()
}

// startVectl starts the destination's vectl with args; wait returns as vectl does.
func (r *remote) startVectl(ctx context.Context, stdin io.Reader, args ...string) (wait func() ([]byte, error), _ error) {
	return r.startVectlIO(ctx, stdin, nil, args...)
}

// startVectlIO is startVectl with the remote vectl's output going to stdout (nil: kept for
// wait).
func (r *remote) startVectlIO(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) (wait func() ([]byte, error), _ error) {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	w, err := r.start(ctx, stdin, stdout, r.command+" "+strings.Join(q, " "))
	if err != nil {
		return nil, err
	}
	return func() ([]byte, error) {
		out, err := w()
		var re *remoteError
		if errors.As(err, &re) {
			code := re.code
			if code == 127 {
				return out, migrateErr(MigrateConnect, "no vectl on %s (%s): pass --remote-vectl", r.host, re.msg)
			}
			if code < 1 || code > 20 {
				code = MigrateStartDest
			}
			return out, &MigrateError{Code: code, Err: re}
		}
		return out, err
	}, nil
}

// rsync copies srcs to dst on the destination through the ssh master.
func (r *remote) rsync(ctx context.Context, srcs []string, dst string, extra ...string) error {
	e := "ssh"
	for _, o := range r.opts {
		e += " " + shellQuote(o)
	}
	args := append([]string{"-aHAX", "--numeric-ids", "--sparse", "-e", e}, extra...)
	args = append(append(args, srcs...), r.host+":"+dst)
	out, err := exec.CommandContext(ctx, "rsync", args...).CombinedOutput()
	if err != nil {
		return &cmdError{"rsync: " + lastLine(out, err), err, out}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell (the remote side of ssh, sh -c), leaving a word of
// plain characters as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
