// Package lcinit runs libcontainer's init for a VE's first process in a program of its own,
// vectl-init (helper/main.go: libcontainer's init and nothing else, built by make and
// embedded here), instead of in vectl's binary. libcontainer starts its init by executing a
// sealed copy of the running binary with the argument "init"; its Go half then starts a Go
// runtime and initialises every package the binary holds. vectl's are many (the CLI, CNI,
// templates, CRIU, HTTP for downloads): on the machine of 2026-12-05 `vectl init` without a
// configuration cost 11 ms of CPU against vectl-init's 6.3 ms (perf stat). So at a VE's start
// vectl names vectl-init as the init's argv[0] (libcontainer passes on its own argv[0]), and
// a C constructor of this package, which runs before nsenter's (it has a priority), executes
// that program at once in place of the copy, with the same arguments, environment and
// descriptors, before anything of the init happened; nsenter's constructor and libcontainer's
// Go init then run in vectl-init. When that exec fails the init goes on in vectl's binary.
//
// Only a VE's first process goes this way: it is PID 1 of a new pid namespace, alone there
// until it executes the VE's init (through vectl's init wrapper, a sealed copy again), so no
// process of the VE can reach the program file through /proc/PID/exe meanwhile (runc's
// CVE-2019-5736, which the sealed copies guard against). The file is root's, mode 0700, in a
// directory only root can write (ROOT/init-bin).
package lcinit

/*
#cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
#include <string.h>
#include <unistd.h>
#include "mainargs.h"

// The priority runs this before every constructor without one (nsenter's among them).
void __attribute__((constructor(101))) vectl_lcinit(int argc, char **argv, char **envp) {
	vectl_main_args(&argc, &argv, &envp);
	if (argc < 2 || strcmp(argv[1], "init") != 0 || argv[0][0] != '/')
		return;
	const char *base = strrchr(argv[0], '/') + 1;
	if (strcmp(base, "vectl-init") == 0)
		execve(argv[0], argv, envp);
}
*/
import "C"

import (
	"embed"
	"os"
	"path/filepath"

	"github.com/vectl/vectl/container/helperbin"
)

// Name is the program's file name, which the constructor looks for in argv[0].
const Name = "vectl-init"

// helperFS holds vectl-init, compressed (bin/vectl-init.zst and bin/vectl-init.sha256, made
// by make). A plain go build leaves only bin/.keep here, and the init runs in vectl's binary.
//
//go:embed all:bin
var helperFS embed.FS

// Path returns the path of vectl-init in dir, extracting it there first if it is not there
// yet (helperbin.Extract), or "" when this binary was built without it.
func Path(dir string) (string, error) {
	return helperbin.Extract(helperFS, "bin/"+Name, dir)
}

// Use runs start with path (Path's result) as this process's argv[0], which libcontainer
// gives its init, so that the init executes vectl-init. An empty path runs start as it is.
// Nothing else may read os.Args meanwhile.
func Use(path string, start func() error) error {
	if path == "" || filepath.Base(path) != Name || !filepath.IsAbs(path) {
		return start()
	}
	saved := os.Args[0]
	os.Args[0] = path
	defer func() { os.Args[0] = saved }()
	return start()
}
