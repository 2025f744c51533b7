package container

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNeedSave means a setting cannot change on a running VE and was given without --save.
var ErrNeedSave = errors.New("takes effect at the next start")

// SetOptions are the changes of one vectl set call. A nil field is left alone.
type SetOptions struct {
	Save bool // persist in config.json (vzctl --save)

	Name        *string
	Description *string
	Monitor     *bool
	StopSignal  *string
	StopTimeout *int
}

// Set changes a VE's settings. Settings that can apply live are applied to a running VE at
// once; the others are stored for the next start and therefore need Save (like vzctl, a
// change without --save is never silently lost). It returns what was done, for the user.
func (m *Manager) Set(ref string, o SetOptions) (string, error) {
	id, l, err := m.lock(ref)
	if err != nil {
		return "", err
	}
	defer l.Unlock()
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return "", err
	}
	var stored []string
	if o.Name != nil {
		if *o.Name != "" {
			if err := validateName(*o.Name); err != nil {
				return "", err
			}
			if owner, err := m.resolve(*o.Name); err == nil && owner != id {
				return "", fmt.Errorf("name %q: %w (VE %s)", *o.Name, ErrExist, owner)
			}
		}
		cfg.Name = *o.Name
		stored = append(stored, "name")
	}
	if o.Description != nil {
		if err := validateDescription(*o.Description); err != nil {
			return "", err
		}
		cfg.Description = *o.Description
		stored = append(stored, "description")
	}
	if o.Monitor != nil {
		cfg.NoMonitor = !*o.Monitor
		stored = append(stored, "monitor")
	}
	if o.StopSignal != nil {
		if *o.StopSignal != "" {
			if _, _, err := stopSignalFor("", *o.StopSignal); err != nil {
				return "", err
			}
		}
		cfg.StopSignal = *o.StopSignal
		stored = append(stored, "stop-signal")
	}
	if o.StopTimeout != nil {
		if *o.StopTimeout < 0 {
			return "", fmt.Errorf("%w: stop timeout %d: use whole seconds, 0 for the default", ErrInvalidValue, *o.StopTimeout)
		}
		cfg.StopTimeout = *o.StopTimeout
		stored = append(stored, "stop-timeout")
	}
	if len(stored) == 0 {
		return "", fmt.Errorf("%w: nothing to set", ErrInvalidValue)
	}
	if !o.Save {
		return "", fmt.Errorf("set %s: %s %w: add --save", id, strings.Join(stored, ", "), ErrNeedSave)
	}
	if err := m.store.SaveConfig(cfg); err != nil {
		return "", err
	}
	return fmt.Sprintf("saved %s", strings.Join(stored, ", ")), nil
}
