package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// ErrNoProfile means a --config / --applyconfig profile does not exist.
var ErrNoProfile = errors.New("profile not found")

// DefaultProfileDir holds the administrator's JSON profiles.
const DefaultProfileDir = "/etc/vectl/profiles"

// builtin are OpenVZ's vswap sample configs (ve-vswap-*.conf-sample): ram, twice as much
// swap, and a disk of matching size for the image layout.
var builtin = map[string]map[string]string{
	"vswap-256m": {"ram": "256M", "swap": "512M", "diskspace": "2G", "cpuunits": "1000", "numproc": "unlimited"},
	"vswap-512m": {"ram": "512M", "swap": "1G", "diskspace": "4G", "cpuunits": "1000", "numproc": "unlimited"},
	"vswap-1g":   {"ram": "1G", "swap": "2G", "diskspace": "10G", "cpuunits": "1000", "numproc": "unlimited"},
	"vswap-2g":   {"ram": "2G", "swap": "4G", "diskspace": "20G", "cpuunits": "1000", "numproc": "unlimited"},
	"vswap-4g":   {"ram": "4G", "swap": "8G", "diskspace": "40G", "cpuunits": "1000", "numproc": "unlimited"},
	"unlimited": {"ram": "unlimited", "swap": "unlimited", "numproc": "unlimited", "cpulimit": "0",
		"cpus": "unlimited", "cpuunits": "1000", "cpumask": "all", "iolimit": "0", "iopslimit": "0"},
}

var profileName = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Profile loads a named profile: a JSON file dir/NAME.json of vzctl parameters and values
// ({"ram": "512M", "cpuunits": "2000"}), else a built-in one. Profiles hold resource
// parameters only; identity and network settings never come from a profile.
func Profile(dir, name string, h Host) (Limits, error) {
	var l Limits
	if !profileName().MatchString(name) {
		return l, fmt.Errorf("%w: profile name %q", ErrInvalid, name)
	}
	path := filepath.Join(dir, name+".json")
	values, err := readProfile(path)
	if errors.Is(err, os.ErrNotExist) {
		var ok bool
		if values, ok = builtin[name]; !ok {
			return l, fmt.Errorf("%w: %s (built in: %s; or add %s)", ErrNoProfile, name,
				strings.Join(ProfileNames(""), ", "), path)
		}
	} else if err != nil {
		return l, err
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "userns" {
			continue // a create setting, not a limit: ProfileUserNS
		}
		if err := l.Set(k, values[k], h); err != nil {
			return Limits{}, fmt.Errorf("profile %s: %w", name, err)
		}
	}
	return l, nil
}

// ProfileUserNS is a profile's "userns" ("yes" or "no"; "" when it does not say), which
// create uses when --userns is not given. Built-in profiles do not say.
func ProfileUserNS(dir, name string) (string, error) {
	if !profileName().MatchString(name) {
		return "", fmt.Errorf("%w: profile name %q", ErrInvalid, name)
	}
	path := filepath.Join(dir, name+".json")
	values, err := readProfile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	v := values["userns"]
	if v != "" && v != "yes" && v != "no" {
		return "", fmt.Errorf("%w: profile %s: userns %q: use yes or no", ErrInvalid, name, v)
	}
	return v, nil
}

func readProfile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]string{}
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64:
			out[k] = fmt.Sprintf("%.0f", v)
		default:
			return nil, fmt.Errorf("%s: %s: use a string or a number", path, k)
		}
	}
	return out, nil
}

// ProfileNames lists the built-in profiles and those in dir.
func ProfileNames(dir string) []string {
	seen := map[string]bool{}
	for n := range builtin {
		seen[n] = true
	}
	if dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			seen[strings.TrimSuffix(filepath.Base(f), ".json")] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// lazyRegexp compiles a regular expression on first use rather than at program start:
// every vectl process (and every VE init and monitor, the same binary) would otherwise
// pay for compiling all of them.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
