// Command vectl-init is libcontainer's init for a VE's first process, as a program of its
// own: vectl's binary, executed by libcontainer as "init", executes this one in its place
// (see package lcinit). It holds libcontainer's init and what that needs, so that its Go
// runtime starts and initialises far fewer packages than vectl's. make builds it and embeds
// it in vectl; it is not a command.
//
// Like vectl, it takes GOMAXPROCS from the environment only (see vectl's main.go).
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor enters the VE's namespaces before the Go runtime starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	// What Debian's libseccomp.a needs from a C library under musl.
	_ "github.com/vectl/vectl/container/libccompat"
	"github.com/vectl/vectl/container/prefault"
	// sysmon's timer slack (see its doc).
	_ "github.com/vectl/vectl/container/slack"
)

func init() {
	// As in runc: after nsenter's constructor, before main.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// libcontainer's init allocates about 1 MiB more from here on (2026-12-05).
		prefault.Heap(1 << 20)
		libcontainer.Init() // does not return
	}
}

func main() {
	fmt.Fprintln(os.Stderr, "vectl-init is libcontainer's init for vectl start, not a command")
	os.Exit(2)
}
