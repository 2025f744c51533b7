package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/vectl/vectl/container/idle"
	"github.com/vectl/vectl/container/lcinit"
	"github.com/vectl/vectl/container/monitor"
	"github.com/vectl/vectl/container/pagecache"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
	"github.com/vectl/vectl/network/cniplugins"
)

// RunMonitor runs the monitor of VE id (package monitor) in this process: the hidden
// "__monitor" command, or start --foreground. The console log and socket, the run id and the
// monitor's pid file are this package's; o says how the monitor was started.
func (m *Manager) RunMonitor(ctx context.Context, id string, o monitor.Options) (monitor.Ending, error) {
	if o.Resume == nil {
		// A boot follows (see warmJSON); a monitor resumed from its idle loop mostly tears
		// down, which needs neither table.
		go warmJSON(true)
	}
	o.LogPath, o.SocketPath = m.consoleLog(id), m.runFile(id, consoleSock)
	o.Load = idle.Load{Tasks: m.loadCgroupDir(id), Out: m.runFile(id, loadavgFile)}
	o.StopMark = m.runFile(id, stoppingFile)
	o.IdleExe = m.idleProgram
	o.LayOut = m.layOutPrograms
	// The views are mounted (Create) exactly when the relay keeps them.
	views := false
	if cfg, err := m.store.LoadConfig(id); err == nil && cfg.Meminfo != "none" {
		o.Views, views = m.viewsSpec(id), true
	}
	if o.Resume == nil {
		data, _ := os.ReadFile(m.runFile(id, runIDFile))
		o.RunID = string(data)
		if err := writePidFile(m.runFile(id, monitorPIDFile), os.Getpid()); err != nil {
			return monitor.EndFailed, o.Report(err)
		}
		if o.Signals != nil { // start --foreground: a stop lets it end by itself (Stop)
			if err := os.WriteFile(m.runFile(id, foregroundFile), nil, 0o600); err != nil {
				return monitor.EndFailed, o.Report(err)
			}
		}
	}
	return monitor.Run(ctx, monitored{m: m, id: id, views: views, restored: new(bool)}, o)
}

// monitored is a VE as its monitor drives it.
type monitored struct {
	m        *Manager
	id       string
	views    bool  // its /proc views are mounted and kept
	restored *bool // the last boot was a restore (Settle)
}

func (v monitored) ID() string { return v.id }

func (v monitored) Create() (*libcontainer.Container, *libcontainer.Process, func(), error) {
	v.m.warmCgroupAttach()
	s, err := v.m.loadSpec(v.id)
	if err != nil {
		return nil, nil, nil, err
	}
	return v.m.newContainer(v.id, s, v.views)
}

func (v monitored) RunInit(c *libcontainer.Container, p *libcontainer.Process, gate func() bool) error {
	if dir, err := os.ReadFile(v.m.runFile(v.id, restoreFile)); err == nil {
		*v.restored = true
		if err := v.m.restoreDump(v.id, string(dir), c, p, gate); err != nil {
			return err
		}
		if v.views {
			// Rendered at Create, before the restore made the VE's cgroups: the host's
			// figures until the relay, which starts after Settle, renders them again.
			// Not worth failing the restore over (the relay renders them anyway).
			_ = idle.RenderViews(v.m.viewsSpec(v.id))
		}
		return nil
	}
	return v.m.runInit(v.id, c, p, gate)
}

// Settle removes the restore's network lock (network.RemoveNetnsLock: a deletion waits for
// an RCU grace period) after the boot was reported, so that the restoring vectl does not
// wait for it.
func (v monitored) Settle() {
	if *v.restored {
		*v.restored = false
		if err := network.RemoveNetnsLock(v.m.netnsPath(v.id)); err != nil {
			v.m.opts.Warn(fmt.Sprintf("VE %s: %v", v.id, err))
		}
	}
}

// Lock waits for the VE's lock up to ten minutes, and on while a restart request for this
// monitor (a foreground vectl) is pending: backup --mode stop holds the lock for the whole
// backup.
func (v monitored) Lock() (*store.Lock, error) {
	for {
		l, err := v.m.store.LockVE(v.id, 10*time.Minute)
		if !errors.Is(err, store.ErrLocked) || !v.m.restartAsked(v.id) { // nil included
			return l, err
		}
	}
}

// OwnsRun reports whether the VE's current run is still the one the monitor started with
// and no live stop is taking care of it. A stop whose vectl died is abandoned: the monitor
// then finishes the teardown itself.
func (v monitored) OwnsRun(runID string) bool {
	cur, err := os.ReadFile(v.m.runFile(v.id, runIDFile))
	if err != nil || string(cur) != runID {
		return false
	}
	_, stopperAlive := readPidFile(v.m.runFile(v.id, stoppingFile))
	return !stopperAlive
}

func (v monitored) Reset() error    { return v.m.destroyContainer(v.id) }
func (v monitored) Teardown() error { return v.m.teardown(v.id, false) }

func (v monitored) Stop(ctx context.Context) error { return v.m.Stop(ctx, v.id, StopOptions{}) }

// layOutPrograms has the layout helper of the idle loop's program helper lay out vectl's
// binary, libcontainer's init program and the CNI plugins in the page cache in 2 MiB folios
// (package idle, layout.c) when this process maps its own binary mostly through small ones
// and its file system keeps large folios, at most once a minute (the modification time of
// RunDir/layout, looked at first: reading the memory map costs more, so a check that finds
// the binary laid out marks it too).
func (m *Manager) layOutPrograms(helper string) error {
	stamp := filepath.Join(m.opts.RunDir, "layout")
	if pagecache.Recent(stamp, time.Minute) {
		return nil
	}
	if !pagecache.Scattered() {
		// Laid out (or never scattered): the starts of the next minute need not read
		// the memory map again to learn it.
		pagecache.Mark(stamp)
		return nil
	}
	self, err := os.Readlink("/proc/self/exe")
	if err != nil || strings.HasSuffix(self, " (deleted)") {
		return err // a binary replaced since this process started is not worth it
	}
	// Without large folios each try would read the programs again for nothing.
	if !pagecache.LargeFolios(self) || !pagecache.Due(stamp, time.Minute) {
		return nil
	}
	files := []string{self}
	if p, err := lcinit.Path(filepath.Join(m.opts.Root, "init-bin")); err == nil && p != "" {
		files = append(files, p)
	}
	if dir := cniplugins.Extracted(filepath.Join(m.opts.Root, "cni-bin")); dir != "" && m.opts.CNIPath == "" {
		for _, name := range cniplugins.Names() {
			files = append(files, filepath.Join(dir, name))
		}
	}
	return idle.LayOut(helper, files)
}
