// Package criuwrap runs criu inside a user-namespace VE's namespaces for its restore.
//
// criu restores a VE with its own user namespace unprivileged, as the VE's root, and leaves
// it to its caller to be there: in the VE's user and network namespaces, in new mount, UTS
// and cgroup namespaces (the host name set, the mounts private) and, when the dump has the
// VE's clocks, in a new time namespace whose offsets carry them on. libcontainer runs "criu
// swrk 3" through PATH; Install makes a directory whose "criu" is a link to this binary,
// whose ELF constructor (criuwrap.c) does all that before the Go runtime starts and then
// executes the real criu. It replaces a bash script that ran nsenter, unshare, sh and
// hostname: five programs per restore, and two for criu's version query.
package criuwrap

/*
#cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
#include "mainargs.h"
#include "criuwrap.h"
void __attribute__((constructor)) vectl_criu_wrap_init(int argc, char **argv, char **envp) {
	vectl_main_args(&argc, &argv, &envp);
	vectl_criu_wrap(argc, argv);
}
*/
import "C"

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Env names the parameter file of the wrapper in criu's environment.
const Env = C.VECTL_CRIU_WRAP_ENV

// Params is what the wrapper needs.
type Params struct {
	Criu     string // the real criu
	Log      string // where the wrapper's and criu's stderr go (appended)
	UserNS   string // the VE's user namespace (an nsfs file)
	NetNS    string // the VE's network namespace
	Hostname string
	// TimeNS: a new time namespace with these offsets (seconds) of CLOCK_MONOTONIC and
	// CLOCK_BOOTTIME.
	TimeNS     bool
	Mono, Boot int64
}

// Install makes dir (created, mode 0711) the wrapper's: dir/criu a link to this binary and
// dir/params its parameters. With dir first in PATH and the returned Env value set, an exec
// of "criu" runs the wrapper.
func Install(dir string, p Params) (string, error) {
	fields := []string{p.Criu, p.Log, p.UserNS, p.NetNS, p.Hostname, "", ""}
	if p.TimeNS {
		fields[5], fields[6] = strconv.FormatInt(p.Mono, 10), strconv.FormatInt(p.Boot, 10)
	}
	if len(fields) != C.VECTL_CRIU_WRAP_FIELDS {
		return "", errors.New("criuwrap: the parameters do not match the wrapper")
	}
	for _, f := range fields {
		if strings.IndexByte(f, 0) >= 0 {
			return "", errors.New("criuwrap: a parameter holds a NUL byte")
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	link := filepath.Join(dir, "criu")
	os.Remove(link)
	if err := os.Symlink(exe, link); err != nil {
		return "", err
	}
	params := filepath.Join(dir, "params")
	if err := os.WriteFile(params, []byte(strings.Join(fields, "\x00")+"\x00"), 0o600); err != nil {
		return "", err
	}
	return params, nil
}
