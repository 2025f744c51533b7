package container

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/template"
)

// Templates lists the OS templates in the cache.
func (m *Manager) Templates() ([]template.Info, error) {
	return m.templates.List()
}

// Template returns the template name from the cache, template.ErrNotFound if it has none.
func (m *Manager) Template(name string) (template.Info, error) {
	return m.templates.Get(name)
}

// downloadLockWait is how long a download waits for another one of the same template.
const downloadLockWait = time.Hour

// DownloadTemplate fetches a template from an image server into the cache
// (template.Store.Download). A concurrent download of the same name waits for the first
// on the template's lock and then finds it in the cache.
func (m *Manager) DownloadTemplate(ctx context.Context, name string, opts template.DownloadOptions) (template.Info, bool, error) {
	if err := m.init(); err != nil {
		return template.Info{}, false, err
	}
	if err := template.ValidateName(name); err != nil {
		return template.Info{}, false, err
	}
	l, err := store.Acquire(filepath.Join(m.opts.Root, "locks", "template-"+name+".lock"), max(m.opts.LockTimeout, downloadLockWait))
	if err != nil {
		return template.Info{}, false, err
	}
	defer l.Unlock()
	return m.templates.Download(ctx, name, opts)
}

// VerifyTemplate re-checks a template's archive and unpacked tree (template.Store.Verify),
// under the template's lock so that no import or removal of it runs meanwhile.
func (m *Manager) VerifyTemplate(ctx context.Context, name string) (template.Verification, error) {
	if _, err := m.templates.Get(name); err != nil {
		return template.Verification{Name: name}, err
	}
	l, err := m.lockTemplate(name)
	if err != nil {
		return template.Verification{}, err
	}
	defer l.Unlock()
	return m.templates.Verify(ctx, name)
}

// unpackedTemplate returns template name with its tree unpacked: a downloaded one is
// unpacked by its first use (template.Store.Unpack), under the template's lock.
func (m *Manager) unpackedTemplate(ctx context.Context, name string) (template.Info, error) {
	info, err := m.templates.Get(name)
	if err != nil || !info.Packed {
		return info, err
	}
	l, err := m.lockTemplate(name)
	if err != nil {
		return info, err
	}
	defer l.Unlock()
	return m.templates.Unpack(ctx, name)
}

// lockTemplate serialises operations on one template name. Template operations do not take
// the global lock (a debootstrap build takes minutes and must not block creates); only
// RemoveTemplate takes both, global first.
func (m *Manager) lockTemplate(name string) (*store.Lock, error) {
	if err := template.ValidateName(name); err != nil {
		return nil, err
	}
	return store.Acquire(filepath.Join(m.opts.Root, "locks", "template-"+name+".lock"), m.opts.LockTimeout)
}

// ImportTemplate adds a template archive file to the cache under name (or a name taken from
// the file name).
func (m *Manager) ImportTemplate(ctx context.Context, file, name string) (template.Info, error) {
	if err := m.init(); err != nil {
		return template.Info{}, err
	}
	if name == "" {
		n, err := template.NameFromFile(file)
		if err != nil {
			return template.Info{}, err
		}
		name = n
	}
	l, err := m.lockTemplate(name)
	if err != nil {
		return template.Info{}, err
	}
	defer l.Unlock()
	return m.templates.Import(ctx, file, name)
}

// BuildTemplate builds a template from distribution packages or the host's busybox.
func (m *Manager) BuildTemplate(ctx context.Context, name string, opts template.BuildOptions) (template.Info, error) {
	if err := m.init(); err != nil {
		return template.Info{}, err
	}
	l, err := m.lockTemplate(name)
	if err != nil {
		return template.Info{}, err
	}
	defer l.Unlock()
	return m.templates.Build(ctx, name, opts)
}

// RemoveTemplate deletes a template from the cache. It refuses while any VE was created
// from it, since overlay VEs use its unpacked tree as their lower layer.
func (m *Manager) RemoveTemplate(name string) error {
	if err := m.init(); err != nil {
		return err
	}
	glock, err := m.store.LockGlobal(m.opts.LockTimeout)
	if err != nil {
		return err
	}
	defer glock.Unlock()
	l, err := m.lockTemplate(name)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := m.templates.Get(name); err != nil {
		return err
	}
	ids, err := m.store.IDs()
	if err != nil {
		return err
	}
	var users []string
	for _, id := range ids {
		if c, err := m.store.LoadConfig(id); err == nil && c.OSTemplate == name {
			users = append(users, id)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return fmt.Errorf("remove template %s: %w by VE %s: destroy them first",
			name, ErrInUse, strings.Join(users, ", "))
	}
	if err := m.templates.Remove(name); err != nil {
		return err
	}
	return l.Remove()
}
