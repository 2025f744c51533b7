// Command vectl manages OpenVZ-style Virtual Environments on a stock Linux kernel.

// Every vectl process is short-lived or idle (commands, a VE's monitor, libcontainer's init
// helper), so GOMAXPROCS need not follow a CPU limit of the cgroup vectl runs in: the runtime
// then reads fewer cgroup files at start-up and starts no goroutine to watch them.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	// Both blank imports are mandatory: nsenter's cgo constructor joins the VE's namespaces
	// before the Go runtime starts (without it start fails with "can't get final child's PID
	// from pipe: EOF"), and the devices package registers the cgroup device-rule manager.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/vectl/vectl/commands"
	// The monitor's idle loop runs from a C constructor of this package (see its doc).
	_ "github.com/vectl/vectl/container/idle"
	"github.com/vectl/vectl/container/join"
	"github.com/vectl/vectl/container/prefault"

	// vectl exec's namespace joiner also runs from a C constructor (see its doc).
	_ "github.com/vectl/vectl/container/nsjoin"
	// What Debian's libseccomp.a (libcontainer's seccomp) needs from a C library under musl.
	_ "github.com/vectl/vectl/container/libccompat"
	// Sends libcontainer's init to its own small program (see its doc).
	_ "github.com/vectl/vectl/container/lcinit"
	// sysmon's timer slack (see its doc).
	_ "github.com/vectl/vectl/container/slack"
)

func init() {
	// libcontainer re-executes this binary as "vectl init" inside a new VE; that process
	// never reaches main. "init" is therefore not a user command.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	// The throwaway process that compiles a VE's seccomp profile for the exec cache.
	if len(os.Args) > 1 && os.Args[1] == join.ExportArg {
		join.ExportMain()
	}
}

func main() {
	// A process that outlives a command's usual few milliseconds (an exec of a long command,
	// stats --interval) stops advising huge pages for its heap (see package prefault).
	prefault.SettleAfter(2 * time.Second)
	os.Exit(commands.Main(os.Args, commands.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
