package container

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// RunScript runs a shell script in a stopped VE, as vzctl runscript does for one: the VE is
// set up as for a start (its root mounted, its namespaces, limits and user namespace) but,
// instead of its init, the VE's shell (bash, else sh) reads the script on its standard input
// as PID 1; no network is attached and no startup script runs. When the shell exits, every
// process left in the VE is killed and the VE is torn down again. It returns the shell's
// exit status.
func (m *Manager) RunScript(ctx context.Context, ref string, script, stdout, stderr *os.File) (int, error) {
	id, l, err := m.lock(ref)
	if err != nil {
		return 0, err
	}
	defer l.Unlock()
	if _, err := m.startable(id); err != nil {
		return 0, fmt.Errorf("runscript %s: %w", id, err)
	}
	code, err := func() (int, error) {
		if _, _, _, err := m.prepare(ctx, id, true, netNone); err != nil {
			return 0, err
		}
		s, err := m.loadSpec(id)
		if err != nil {
			return 0, err
		}
		shell := "/bin/sh"
		if _, err := os.Stat(m.store.RootDir(id) + "/bin/bash"); err == nil {
			shell = "/bin/bash"
		}
		s.Process.Args = []string{shell, "-s"}
		s.Process.Terminal = false
		c, p, done, err := m.newContainer(id, s, false)
		if err != nil {
			return 0, err
		}
		defer done()
		p.Stdin, p.Stdout, p.Stderr = script, stdout, stderr
		if err := m.runInit(id, c, p, nil); err != nil {
			c.Destroy()
			return 0, fmt.Errorf("run the script: %w", err)
		}
		st, err := p.Wait()
		if st == nil {
			return 0, err
		}
		return exitCode(st, err), nil
	}()
	if terr := m.teardown(id, false); terr != nil {
		err = errors.Join(err, terr)
	}
	if err != nil {
		return 0, fmt.Errorf("runscript %s: %w", id, err)
	}
	return code, nil
}
