package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vectl/vectl/resources"
)

// SchemaVersion is the version of config.json this vectl writes and the newest it reads.
// Bump it whenever a field is added or its meaning changes, so that an older vectl refuses a
// newer file instead of silently dropping what it does not know.
const SchemaVersion = 2 // 2: userns

var (
	// ErrCorrupt means a state file is not what vectl wrote: unreadable JSON, unknown fields,
	// missing schema version.
	ErrCorrupt = errors.New("corrupt state file")
	// ErrNewerSchema means a state file was written by a newer vectl.
	ErrNewerSchema = errors.New("written by a newer vectl")
)

// FileError names the state file a problem was found in.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

// Config is the desired configuration of one VE, persisted as ve/<id>/config.json.
// Observed state (running, pids, addresses in use) is never stored here.
type Config struct {
	Schema      int       `json:"schema"`
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	Description string    `json:"description,omitempty"`
	Hostname    string    `json:"hostname,omitempty"`
	OSTemplate  string    `json:"ostemplate"`
	Layout      string    `json:"layout"`
	Created     time.Time `json:"created"`
	// Base is the top layer of the overlay's lower layers above the template (a snapshot's
	// or the source VE's of a clone; ROOT/layers/BASE); "": the template alone.
	Base string `json:"base,omitempty"`
	// NewIdentity marks a clone that has not started yet: its first start gives it its own
	// machine-id and SSH host keys before its init runs.
	NewIdentity bool `json:"new_identity,omitempty"`

	// StopSignal overrides the shutdown request detected from the VE's init: a signal name
	// (SIGRTMIN+3, SIGUSR2, SIGPWR, ...) or "halt" to run /sbin/halt inside the VE.
	StopSignal string `json:"stop_signal,omitempty"`
	// StopTimeout is how long stop waits for a graceful shutdown, in seconds (0: default).
	StopTimeout int `json:"stop_timeout,omitempty"`
	// NoMonitor runs the VE without a resident monitor: no console, and an in-VE reboot
	// means stop.
	NoMonitor bool `json:"no_monitor,omitempty"`
	// OnBoot marks a VE that vectl boot starts; VEs with a higher BootOrder start first.
	OnBoot    bool `json:"onboot,omitempty"`
	BootOrder int  `json:"bootorder,omitempty"`

	// IPs are the VE's addresses with their prefix length ("10.199.0.11/16").
	IPs []string `json:"ips,omitempty"`
	// Nameservers and SearchDomains are written to the VE's /etc/resolv.conf at start.
	Nameservers   []string `json:"nameservers,omitempty"`
	SearchDomains []string `json:"searchdomains,omitempty"`
	// NetIfs are the VE's bridged interfaces (vectl set --netif_add).
	NetIfs []NetIf `json:"netifs,omitempty"`

	// Resources are the VE's limits (vzctl's cpuunits, ram, numproc, diskspace, ...).
	Resources resources.Limits `json:"resources"`

	// UserNS, when set, gives the VE a user namespace of its own: its ids 0-65535 are the
	// host's UID.. and GID.. (Size of them). Nil: a privileged VE, whose root is host root.
	UserNS *IDMap `json:"userns,omitempty"`
	// Disabled VEs do not start unless forced (vzctl --disabled; start --force).
	Disabled bool `json:"disabled,omitempty"`
	// Capabilities turns capabilities on or off against the VE's default set (vzctl
	// --capability; names in lower case without CAP_), from its next start.
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	// Devices are host devices the VE may use (vzctl --devices and --devnodes), from its
	// next start.
	Devices []Device `json:"devices,omitempty"`
	// Features are vzctl's --features (ppp, bridge, ...): on or off.
	Features map[string]bool `json:"features,omitempty"`

	// Nesting lets a user-namespace VE run containers of its own: on cgroup v1 its cgroup
	// is delegated in every hierarchy and its controllers are mounted writable (Incus's
	// security.nesting). Off, only the name=systemd hierarchy is.
	Nesting bool `json:"nesting,omitempty"`

	// Meminfo is vzctl's --meminfo: "none" shows the host's /proc/meminfo, cpuinfo,
	// loadavg and CPU lists inside the VE; empty (vzctl's default, privvmpages:1) the VE's
	// own views of them, rendered by its monitor from its limits and usage.
	Meminfo string `json:"meminfo,omitempty"`
}

// IDMap is a VE's range of host ids.
type IDMap struct {
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Size uint32 `json:"size"`
}

// String renders the map as list -o uidmap shows it: "0:UID:SIZE" (and ":GID" when the gid
// base differs).
func (m *IDMap) String() string {
	if m == nil {
		return "-"
	}
	if m.GID == m.UID {
		return fmt.Sprintf("0:%d:%d", m.UID, m.Size)
	}
	return fmt.Sprintf("0:%d:%d,gid 0:%d:%d", m.UID, m.Size, m.GID, m.Size)
}

// Device is a host device a VE may use: a device cgroup rule and, for a --devnodes entry,
// the node in the VE's /dev.
type Device struct {
	Type   string `json:"type"`  // "c" or "b"
	Major  int64  `json:"major"` // -1: every major
	Minor  int64  `json:"minor"` // -1: every minor
	Access string `json:"access"`
	// Path is the node under /dev ("net/tun") for a --devnodes entry; "" for a rule only.
	Path string `json:"path,omitempty"`
}

// NetIf is a bridged interface of a VE.
type NetIf struct {
	Name     string `json:"name"`
	Bridge   string `json:"bridge"`
	MAC      string `json:"mac,omitempty"`
	HostName string `json:"host_ifname,omitempty"`
	// Router lets the VE send router advertisements, redirects and DHCP server messages on
	// the bridge (--netif_add ...,router=yes).
	Router bool `json:"router,omitempty"`
}

// Store is the state directory tree rooted at Root (by default /var/lib/vectl).
type Store struct {
	Root string
}

// New returns the store rooted at root. Call Init before writing to it.
func New(root string) *Store { return &Store{Root: root} }

// Init creates the store's directories when they are missing.
func (s *Store) Init() error {
	// The root and any parent made for it are searchable (their entries are not): the root
	// of a user-namespace VE, an unprivileged host uid, looks its root up below it.
	if err := os.MkdirAll(s.Root, 0o711); err != nil {
		return err
	}
	for _, d := range []string{"ve", "private", "root", "locks"} {
		if err := os.MkdirAll(filepath.Join(s.Root, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// VEDir is the directory holding a VE's config files.
func (s *Store) VEDir(id string) string { return filepath.Join(s.Root, "ve", id) }

// ConfigPath is the path of a VE's config.json.
func (s *Store) ConfigPath(id string) string { return filepath.Join(s.VEDir(id), "config.json") }

// PrivateDir is a VE's private area (its rootfs, overlay upper layer or disk image).
func (s *Store) PrivateDir(id string) string { return filepath.Join(s.Root, "private", id) }

// RootDir is where a VE's root filesystem is mounted while the VE is mounted.
func (s *Store) RootDir(id string) string { return filepath.Join(s.Root, "root", id) }

// LockPath is the lock file of one VE. It lives outside ve/<id> so that destroy can remove
// that directory while still holding the lock.
func (s *Store) LockPath(id string) string { return filepath.Join(s.Root, "locks", id+".lock") }

// creatingPath marks a VE whose create has not finished (or was killed).
func (s *Store) creatingPath(id string) string { return filepath.Join(s.VEDir(id), "creating") }

// LockVE takes the lock of one VE, waiting up to timeout.
func (s *Store) LockVE(id string, timeout time.Duration) (*Lock, error) {
	return Acquire(s.LockPath(id), timeout)
}

// LockGlobal takes the store-wide lock that makes id and name allocation atomic.
func (s *Store) LockGlobal(timeout time.Duration) (*Lock, error) {
	return Acquire(filepath.Join(s.Root, "locks", "global.lock"), timeout)
}

// Exists reports whether a VE directory exists for id (complete or not).
func (s *Store) Exists(id string) bool {
	_, err := os.Lstat(s.VEDir(id))
	return err == nil
}

// IDs lists the ids of all VEs in the store, sorted.
func (s *Store) IDs() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Root, "ve"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return []string{}, nil
		}
		return nil, err
	}
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() && !IsTemp(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Reserve creates the directory of a new VE, marked as being created, and writes its first
// config. The caller must hold the global lock and must have checked that id is free.
func (s *Store) Reserve(c *Config) error {
	if err := os.Mkdir(s.VEDir(c.ID), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(s.creatingPath(c.ID), nil, 0o600); err != nil {
		return err
	}
	return s.SaveConfig(c)
}

// FinishCreate removes the marker that Reserve set.
func (s *Store) FinishCreate(id string) error {
	if err := os.Remove(s.creatingPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return SyncDir(s.VEDir(id))
}

// Incomplete reports whether a VE's create never finished.
func (s *Store) Incomplete(id string) bool {
	_, err := os.Lstat(s.creatingPath(id))
	return err == nil
}

// LoadConfig reads and validates a VE's config.json. Errors name the file.
func (s *Store) LoadConfig(id string) (*Config, error) {
	path := s.ConfigPath(id)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err == nil && c.ID != id {
		// A config that names another VE would have every change saved under that one's
		// directory (found by FuzzConfigJSON).
		err = fmt.Errorf("%w: it names VE %q, not %q", ErrCorrupt, c.ID, id)
	}
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return c, nil
}

// ParseConfig decodes a config.json. It refuses unknown fields and schema versions newer than
// SchemaVersion rather than guessing.
func ParseConfig(data []byte) (*Config, error) {
	var head struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch {
	case head.Schema == nil || *head.Schema < 1:
		return nil, fmt.Errorf("%w: no schema version", ErrCorrupt)
	case *head.Schema > SchemaVersion:
		return nil, fmt.Errorf("schema version %d %w (this one reads up to %d); upgrade vectl",
			*head.Schema, ErrNewerSchema, SchemaVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: no id", ErrCorrupt)
	}
	return &c, nil
}

// SaveConfig writes a VE's config.json atomically, stamping the current schema version.
func (s *Store) SaveConfig(c *Config) error {
	c.Schema = SchemaVersion
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(s.ConfigPath(c.ID), append(data, '\n'), 0o600)
}
