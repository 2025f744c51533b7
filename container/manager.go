// Package container is the VE domain: a VE's desired configuration, its live status, and the
// Manager that creates, mounts, starts, stops and destroys VEs. It and the two packages it
// drives, container/monitor (a VE's supervisor) and container/join (commands started in a
// running VE), are the only vectl packages that import libcontainer.
package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vectl/vectl/container/idle"
	"github.com/vectl/vectl/container/join"
	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// Config is the desired configuration of one VE as stored in its config.json.
type Config = store.Config

// IDMap is a user-namespace VE's range of host ids.
type IDMap = store.IDMap

// Layouts of a VE's private area.
const (
	LayoutOverlay = layout.Overlay // shared read-only template + private upper directory
	LayoutCopy    = layout.Copy    // full private copy of the template
)

// Default locations, overridable through Options.
const (
	DefaultRoot        = "/var/lib/vectl"
	DefaultRunDir      = "/run/vectl"
	DefaultLogDir      = "/var/log/vectl"
	DefaultLockTimeout = 10 * time.Second
)

// Options configure a Manager.
type Options struct {
	Root        string        // persistent state (DefaultRoot)
	RunDir      string        // volatile state, gone after a host reboot (DefaultRunDir)
	LogDir      string        // console logs (DefaultLogDir)
	TemplateDir string        // template cache (Root/templates)
	LockTimeout time.Duration // how long to wait for a VE or the global lock
	// NetworkConfig is the node's network configuration file (address pools, uplinks).
	NetworkConfig string
	// CNIPath, when set, is where the host's CNI plugins are; otherwise the plugins embedded
	// in vectl are used.
	CNIPath string
	// FirewallTable names vectl's nftables tables ("vectl").
	FirewallTable string
	// ProfileDir holds JSON resource profiles (resources.DefaultProfileDir).
	ProfileDir string
	// CgroupManager is the cgroup driver: CgroupFS (default) or CgroupSystemd (where systemd
	// is PID 1). Switch it only while no VE runs: a running VE is found by its driver's path.
	CgroupManager string
	// CgroupParent is the absolute cgroup VEs live under (DefaultCgroupParent); with the
	// systemd driver its name is the slice. Two instances on one host need different ones.
	CgroupParent string
	// VZConfDir is where vzctl's view of the VEs' configs is written (DefaultVZConfDir;
	// "" for none): vz.conf and conf/ID.conf.
	VZConfDir string
	// CriuLogLevel is the level of CRIU's logs of dumps and restores: 1 errors, 2 and
	// warnings (0: 2, CRIU's own default), 3 and information, 4 and debug messages.
	CriuLogLevel int
	// Warn reports a problem that does not fail the operation (nil: dropped).
	Warn func(string)
}

// Manager performs operations on the VEs of one state root. It holds no resident state:
// every method reads what it needs from disk and the kernel.
type Manager struct {
	opts      Options
	store     *store.Store
	templates *template.Store
	joiner    *join.Joiner
	// migrating is the VE this process migrates (or undoes the migration of): its own
	// stops, checkpoints and restores of it pass the migration's lock (see lock).
	migrating string
	// yard is the node's CRIU cgroup yard, once looked at (cgroupYard).
	yard struct {
		once sync.Once
		dir  string
	}
	// spec is the OCI spec this process's start just wrote (prepare), which the boot that
	// follows in the same process (a start that becomes the monitor, a foreground start)
	// takes instead of reading the file back (loadSpec).
	spec struct {
		sync.Mutex
		id string
		s  *specs.Spec
	}
}

// New returns a Manager for opts, filling in defaults. It does not touch the disk.
func New(opts Options) *Manager {
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if opts.RunDir == "" {
		opts.RunDir = DefaultRunDir
	}
	if opts.LogDir == "" {
		opts.LogDir = DefaultLogDir
	}
	if opts.NetworkConfig == "" {
		opts.NetworkConfig = network.DefaultConfigPath
	}
	if opts.CgroupManager == "" {
		opts.CgroupManager = CgroupFS
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = DefaultCgroupParent
	}
	if opts.ProfileDir == "" {
		opts.ProfileDir = resources.DefaultProfileDir
	}
	if opts.FirewallTable == "" {
		opts.FirewallTable = "vectl"
	}
	if opts.TemplateDir == "" {
		opts.TemplateDir = filepath.Join(opts.Root, "templates")
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	m := &Manager{
		opts:      opts,
		store:     store.New(opts.Root),
		templates: template.NewStore(opts.TemplateDir),
	}
	m.joiner = &join.Joiner{
		CacheDir:   filepath.Join(opts.RunDir, "seccomp"),
		RecordPath: func(id string) string { return m.runFile(id, seccompRecord) },
		SealDir:    func(id string) string { return filepath.Join(m.lcRoot(), id) },
		Program:    m.idleProgram,
	}
	return m
}

// idleProgram is the path of the idle-loop program (package idle: the idle loop, the init
// wrapper and exec's joiner as a small program of their own), extracted under the state
// root once per build; "" when this build has none.
func (m *Manager) idleProgram() (string, error) {
	return idle.HelperPath(filepath.Join(m.opts.Root, "idle-bin"))
}

// init creates the state directories; every mutating operation calls it first.
func (m *Manager) init() error {
	if err := m.store.Init(); err != nil {
		return fmt.Errorf("state root %s: %w", m.opts.Root, err)
	}
	if err := os.MkdirAll(m.opts.TemplateDir, 0o700); err != nil {
		return fmt.Errorf("template dir: %w", err)
	}
	return nil
}

// resolve turns what the user typed (an id or a VE's --name) into an existing VE's id.
func (m *Manager) resolve(ref string) (string, error) {
	if err := ValidateID(ref); err != nil {
		return "", err
	}
	if m.store.Exists(ref) {
		return ref, nil
	}
	if !numeric(ref) {
		ids, err := m.store.IDs()
		if err != nil {
			return "", err
		}
		for _, id := range ids {
			c, err := m.store.LoadConfig(id)
			if err == nil && c.Name == ref {
				return id, nil
			}
		}
	}
	return "", fmt.Errorf("%s: %w", ref, ErrNotExist)
}

// lock resolves ref and takes that VE's lock. The VE may have vanished while we waited
// (a concurrent destroy), so existence is checked again under the lock.
func (m *Manager) lock(ref string) (string, *store.Lock, error) {
	id, err := m.resolve(ref)
	if err != nil {
		return "", nil, err
	}
	l, err := m.store.LockVE(id, m.opts.LockTimeout)
	if err != nil {
		return "", nil, fmt.Errorf("VE %s: %w", id, err)
	}
	if !m.store.Exists(id) {
		l.Unlock()
		return "", nil, fmt.Errorf("%s: %w", id, ErrNotExist)
	}
	if id != m.migrating {
		if host := m.migrationUnderway(id); host != "" {
			l.Unlock()
			return "", nil, fmt.Errorf("VE %s: a migration to %s is under way (or its guard is undoing it; %s): %w",
				id, host, m.journalPath(id), store.ErrLocked)
		}
	}
	return id, l, nil
}

// Config returns the stored configuration of a VE.
func (m *Manager) Config(ref string) (*Config, error) {
	id, err := m.resolve(ref)
	if err != nil {
		return nil, err
	}
	return m.store.LoadConfig(id)
}

// PrivateDir is where a VE's private area lives (vzctl's VE_PRIVATE).
func (m *Manager) PrivateDir(id string) string { return m.store.PrivateDir(id) }

// RootDir is where a VE's root is mounted (vzctl's VE_ROOT).
func (m *Manager) RootDir(id string) string { return m.store.RootDir(id) }

// consoleLog is the path of a VE's console log.
func (m *Manager) consoleLog(id string) string {
	return filepath.Join(m.opts.LogDir, id+".console")
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
