package container

import (
	"context"
	"fmt"
)

// Destroy removes a stopped VE and everything it has on disk (vzctl destroy). It also
// finishes the job after a create, destroy or run that was killed midway.
func (m *Manager) Destroy(ctx context.Context, ref string) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if st := m.observe(id); st.Running {
		return fmt.Errorf("destroy %s: %w: stop it first", id, ErrRunning)
	}
	if m.leftovers(id) {
		if err := m.teardown(id, false); err != nil {
			return fmt.Errorf("destroy %s: %w", id, err)
		}
	}
	// The dump of a suspended VE wherever it is, and one in the default place (a dump taken
	// with --leave-running).
	for _, dir := range []string{m.dumpOf(id), m.DumpDir(id)} {
		if dir == "" {
			continue
		}
		if err := m.dropDump(id, dir); err != nil {
			return fmt.Errorf("destroy %s: %w", id, err)
		}
	}
	if err := m.removeVE(id, l); err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	return nil
}
