package container

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/resources"
)

// vzctl's configuration files, kept for the programs that read them (libvirt's OpenVZ
// driver, node scripts): VZCONFDIR/vz.conf and VZCONFDIR/conf/ID.conf in vzctl's keys,
// generated from the VE's config.json, which stays the source of truth, at every change.
// Lines that others add (libvirt's "#UUID:", keys vectl does not write) are kept through
// every rewrite. A key of vectl's that changed in the file since vectl wrote it is taken
// in by the vzctl and vzlist personalities (VZConfChanges) and reported otherwise.

// DefaultVZConfDir is where vzctl keeps its configuration.
const DefaultVZConfDir = "/etc/vz"

// vzConfHeader starts every file vectl generates.
const vzConfHeader = "# Written by vectl from its config.json at every change; vzctl's keys here are a view.\n" +
	"# Change them with vzctl set --save or vectl set --save. Lines of your own are kept.\n"

// VZConfPath is the vzctl config file of a VE ("" when vectl keeps none).
func (m *Manager) VZConfPath(id string) string {
	if m.opts.VZConfDir == "" {
		return ""
	}
	return filepath.Join(m.opts.VZConfDir, "conf", id+".conf")
}

// vzConfLast is the copy of what vectl last wrote to the VE's vzctl config, against which
// changes made by others are told apart.
func (m *Manager) vzConfLast(id string) string { return filepath.Join(m.store.VEDir(id), "vz.conf") }

// VZKV is one KEY="value" line of a vzctl config.
type VZKV struct{ Key, Value string }

// vzConfValues renders cfg in vzctl's keys and units, in vzctl's order.
func (m *Manager) vzConfValues(cfg *Config) []VZKV {
	var kv []VZKV
	add := func(k, v string) { kv = append(kv, VZKV{k, v}) }
	onboot := "no"
	if cfg.OnBoot {
		onboot = "yes"
	}
	add("ONBOOT", onboot)
	if cfg.BootOrder > 0 {
		add("BOOTORDER", strconv.Itoa(cfg.BootOrder))
	}
	l := cfg.Resources
	pagesOf := func(p *int64) string {
		if p == nil || *p == resources.Unlimited {
			return "unlimited"
		}
		return strconv.FormatInt(*p/resources.PageSize, 10)
	}
	add("PHYSPAGES", "0:"+pagesOf(l.RAM))
	swap := "0"
	if l.Swap != nil {
		swap = pagesOf(l.Swap) // no swap unless set
	}
	add("SWAPPAGES", "0:"+swap)
	if l.NumProc != nil {
		n := "unlimited"
		if *l.NumProc != resources.Unlimited {
			n = strconv.FormatInt(*l.NumProc, 10)
		}
		add("NUMPROC", n+":"+n)
	}
	if l.NumFile != nil {
		n := strconv.FormatUint(*l.NumFile, 10)
		add("NUMFILE", n+":"+n)
	}
	if l.DiskSpace != nil {
		n := "unlimited"
		if *l.DiskSpace != resources.Unlimited {
			n = strconv.FormatInt(*l.DiskSpace/resources.KiB, 10)
		}
		add("DISKSPACE", n+":"+n)
	}
	if l.DiskInodes != nil {
		n := "unlimited"
		if *l.DiskInodes != resources.Unlimited {
			n = strconv.FormatInt(*l.DiskInodes, 10)
		}
		add("DISKINODES", n+":"+n)
	}
	u64 := func(k string, p *uint64) {
		if p != nil {
			add(k, strconv.FormatUint(*p, 10))
		}
	}
	i64 := func(k string, p *int64) {
		if p != nil {
			add(k, strconv.FormatInt(*p, 10))
		}
	}
	u64("CPUUNITS", l.CPUUnits)
	u64("CPULIMIT", l.CPULimit)
	u64("CPUS", l.CPUs)
	if l.CPUMask != "" {
		add("CPUMASK", l.CPUMask)
	}
	if l.NodeMask != "" {
		add("NODEMASK", l.NodeMask)
	}
	if l.IOPrio != nil {
		add("IOPRIO", strconv.Itoa(*l.IOPrio))
	}
	i64("IOLIMIT", l.IOLimit)
	i64("IOPSLIMIT", l.IOPSLimit)
	for _, n := range resources.UBCNames {
		if v, ok := l.UBC[n]; ok {
			add(strings.ToUpper(n), v)
		}
	}
	add("VE_ROOT", m.store.RootDir(cfg.ID))
	add("VE_PRIVATE", m.store.PrivateDir(cfg.ID))
	add("VE_LAYOUT", cfg.Layout)
	add("OSTEMPLATE", cfg.OSTemplate)
	var ips []string
	for _, a := range cfg.IPs {
		ip, _, _ := strings.Cut(a, "/")
		ips = append(ips, ip)
	}
	add("IP_ADDRESS", strings.Join(ips, " "))
	if cfg.Hostname != "" {
		add("HOSTNAME", cfg.Hostname)
	}
	if len(cfg.Nameservers) > 0 {
		add("NAMESERVER", strings.Join(cfg.Nameservers, " "))
	}
	if len(cfg.SearchDomains) > 0 {
		add("SEARCHDOMAIN", strings.Join(cfg.SearchDomains, " "))
	}
	if cfg.Name != "" {
		add("NAME", cfg.Name)
	}
	if cfg.Description != "" {
		add("DESCRIPTION", cfg.Description)
	}
	if len(cfg.NetIfs) > 0 {
		var ifs []string
		for _, n := range cfg.NetIfs {
			s := "ifname=" + n.Name
			if n.MAC != "" {
				s += ",mac=" + n.MAC
			}
			if n.HostName != "" {
				s += ",host_ifname=" + n.HostName
			}
			s += ",bridge=" + n.Bridge
			ifs = append(ifs, s)
		}
		add("NETIF", strings.Join(ifs, ";"))
	}
	if cfg.StopTimeout > 0 {
		add("STOP_TIMEOUT", strconv.Itoa(cfg.StopTimeout))
	}
	if cfg.Disabled {
		add("DISABLED", "yes")
	}
	if len(cfg.Capabilities) > 0 {
		add("CAPABILITY", FormatCapabilities(cfg.Capabilities))
	}
	if rules, nodes := FormatDevices(cfg.Devices); rules != "" || nodes != "" {
		if rules != "" {
			add("DEVICES", rules)
		}
		if nodes != "" {
			add("DEVNODES", nodes)
		}
	}
	if len(cfg.Features) > 0 {
		add("FEATURES", FormatFeatures(cfg.Features))
	}
	return kv
}

// ParseVZConf reads a vzctl config: KEY="value" or KEY=value lines (the last of a key
// counts), comments and blank lines skipped.
func ParseVZConf(data []byte) []VZKV {
	var out []VZKV
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := vzConfLine(line); ok {
			out = append(out, VZKV{k, v})
		}
	}
	return out
}

// vzConfLine parses one line as vzctl's config reader does.
func vzConfLine(line string) (string, string, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", "", false
	}
	k, v, ok := strings.Cut(line, "=")
	if !ok || k == "" {
		return "", "", false
	}
	for _, c := range k {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "", "", false
		}
	}
	v = strings.TrimSpace(v)
	if len(v) >= 1 && (v[0] == '"' || v[0] == '\'') {
		q := v[0]
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch {
			case v[i] == q:
				return k, b.String(), true
			case q == '"' && v[i] == '\\' && i+1 < len(v):
				i++
			}
			b.WriteByte(v[i])
		}
		return k, b.String(), true
	}
	if i := strings.IndexAny(v, " \t#"); i >= 0 {
		v = v[:i]
	}
	return k, v, true
}

// vzQuote writes a value as vzctl does, in double quotes; a quote or backslash inside is
// escaped with a backslash. "$VEID" stays as it is: vzctl and its clients expand it.
func vzQuote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(v) + `"`
}

func lookupKV(kv []VZKV, key string) (string, bool) {
	val, found := "", false
	for _, e := range kv {
		if e.Key == key {
			val, found = e.Value, true
		}
	}
	return val, found
}

// syncVZConf writes the VE's vzctl config from cfg. Lines of the current file that are not
// among the keys vectl writes are kept, after vectl's; a key of vectl's whose value someone
// changed since vectl last wrote it is reported through warn and then rewritten.
func (m *Manager) syncVZConf(cfg *Config, warn func(string)) error {
	path := m.VZConfPath(cfg.ID)
	if path == "" {
		return nil
	}
	cur, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	gen := m.vzConfValues(cfg)
	for _, ch := range m.vzConfDrift(cfg.ID, cur) {
		if v, _ := lookupKV(gen, ch.Key); v != ch.Value && warn != nil {
			warn(fmt.Sprintf("%s: %s=%q was changed outside vectl and is not taken in (use vzctl set --save)", path, ch.Key, ch.Value))
		}
	}
	ours := map[string]bool{}
	var b bytes.Buffer
	b.WriteString(vzConfHeader)
	for _, kv := range gen {
		ours[kv.Key] = true
		fmt.Fprintf(&b, "%s=%s\n", kv.Key, vzQuote(kv.Value))
	}
	var last bytes.Buffer
	last.Write(b.Bytes())
	for _, line := range strings.Split(string(cur), "\n") {
		k, _, ok := vzConfLine(line)
		switch {
		case strings.TrimSpace(line) == "":
		case ok && (ours[k] || vzManagedKeys[k]):
		case !ok && strings.Contains(vzConfHeader, strings.TrimSpace(line)+"\n"):
			// vectl's own header
		default:
			b.WriteString(line + "\n")
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := m.writeGlobalVZConf(); err != nil {
		return err
	}
	if err := store.WriteFileAtomic(path, b.Bytes(), 0o644); err != nil {
		return err
	}
	return store.WriteFileAtomic(m.vzConfLast(cfg.ID), last.Bytes(), 0o600)
}

// vzManagedKeys are the keys vectl writes when the VE has the setting; a line with one of
// them that vectl did not write this time (the setting was unset) goes.
var vzManagedKeys = map[string]bool{"ONBOOT": true, "BOOTORDER": true, "PHYSPAGES": true,
	"SWAPPAGES": true, "NUMPROC": true, "NUMFILE": true, "DISKSPACE": true, "DISKINODES": true,
	"CPUUNITS": true, "CPULIMIT": true, "CPUS": true, "CPUMASK": true, "NODEMASK": true,
	"IOPRIO": true, "IOLIMIT": true, "IOPSLIMIT": true, "VE_ROOT": true, "VE_PRIVATE": true,
	"VE_LAYOUT": true, "OSTEMPLATE": true, "IP_ADDRESS": true, "HOSTNAME": true,
	"NAMESERVER": true, "SEARCHDOMAIN": true, "NAME": true, "DESCRIPTION": true, "NETIF": true,
	"STOP_TIMEOUT": true, "DISABLED": true, "CAPABILITY": true, "DEVICES": true, "DEVNODES": true,
	"FEATURES": true}

func init() {
	for _, n := range resources.UBCNames {
		vzManagedKeys[strings.ToUpper(n)] = true
	}
}

// vzConfDrift lists the keys of vectl's that differ in cur (the file as it is) from what
// vectl last wrote, with their new values ("" for a key someone removed).
func (m *Manager) vzConfDrift(id string, cur []byte) []VZKV {
	last, err := os.ReadFile(m.vzConfLast(id))
	if err != nil || cur == nil {
		return nil
	}
	was, now := ParseVZConf(last), ParseVZConf(cur)
	var out []VZKV
	seen := map[string]bool{}
	for _, kv := range append(append([]VZKV{}, was...), now...) {
		if !vzManagedKeys[kv.Key] || seen[kv.Key] {
			continue
		}
		seen[kv.Key] = true
		a, _ := lookupKV(was, kv.Key)
		b, _ := lookupKV(now, kv.Key)
		if a != b {
			out = append(out, VZKV{kv.Key, b})
		}
	}
	return out
}

// VZConfChanges returns the settings someone changed in the VE's vzctl config since vectl
// wrote it (nil when the file is as vectl left it).
func (m *Manager) VZConfChanges(id string) []VZKV {
	path := m.VZConfPath(id)
	if path == "" {
		return nil
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return m.vzConfDrift(id, cur)
}

// SyncVZConf rewrites the VE's vzctl config from its config.json (after the changes were
// taken in or reported).
func (m *Manager) SyncVZConf(id string, warn func(string)) error {
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return err
	}
	return m.syncVZConf(cfg, warn)
}

// removeVZConf moves the config of a destroyed VE aside as vzctl does (ID.conf.destroyed);
// a file vectl did not write is left alone.
func (m *Manager) removeVZConf(id string) error {
	path := m.VZConfPath(id)
	if path == "" {
		return nil
	}
	if cur, err := os.ReadFile(path); err != nil || !bytes.HasPrefix(cur, []byte(vzConfHeader)) {
		return nil
	}
	if err := os.Rename(path, path+".destroyed"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeGlobalVZConf writes VZCONFDIR/vz.conf, keeping the lines of others (DEF_OSTEMPLATE,
// CONFIGFILE, ...), unless a file that vectl did not write is there: a real OpenVZ node's,
// left alone.
func (m *Manager) writeGlobalVZConf() error {
	path := filepath.Join(m.opts.VZConfDir, "vz.conf")
	cur, err := os.ReadFile(path)
	switch {
	case err == nil && !bytes.HasPrefix(cur, []byte(vzConfHeader)):
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	var b bytes.Buffer
	b.WriteString(vzConfHeader)
	gen := []VZKV{
		{"VIRTUOZZO", "yes"},
		{"LOCKDIR", filepath.Join(m.opts.Root, "locks")},
		{"DUMPDIR", filepath.Join(m.opts.Root, "dump")},
		{"VE_ROOT", filepath.Join(m.opts.Root, "root", "$VEID")},
		{"VE_PRIVATE", filepath.Join(m.opts.Root, "private", "$VEID")},
		{"TEMPLATE", m.opts.TemplateDir},
		{"VE_LAYOUT", LayoutOverlay},
	}
	ours := map[string]bool{}
	for _, kv := range gen {
		ours[kv.Key] = true
		fmt.Fprintf(&b, "%s=%s\n", kv.Key, vzQuote(kv.Value))
	}
	for _, line := range strings.Split(string(cur), "\n") {
		k, _, ok := vzConfLine(line)
		switch {
		case strings.TrimSpace(line) == "", ok && ours[k]:
		case !ok && strings.Contains(vzConfHeader, strings.TrimSpace(line)+"\n"):
		default:
			b.WriteString(line + "\n")
		}
	}
	if bytes.Equal(b.Bytes(), cur) {
		return nil
	}
	return store.WriteFileAtomic(path, b.Bytes(), 0o644)
}

// VZGlobal reads a key of VZCONFDIR/vz.conf (DEF_OSTEMPLATE, ...); "" when unset.
func (m *Manager) VZGlobal(key string) string {
	if m.opts.VZConfDir == "" {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(m.opts.VZConfDir, "vz.conf"))
	if err != nil {
		return ""
	}
	v, _ := lookupKV(ParseVZConf(data), key)
	return v
}
