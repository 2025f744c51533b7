package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The id ranges of user-namespace VEs are indexed under ROOT/userns: one file per range,
// named UID-GID, holding the VE's id, so that allocating a range for a new VE reads one
// directory instead of every VE's config. The VE's config stays the truth; an entry whose
// VE is gone is dropped when it is found.

func (s *Store) idmapDir() string { return filepath.Join(s.Root, "userns") }

func idmapName(m IDMap) string { return fmt.Sprintf("%d-%d", m.UID, m.GID) }

// IDMaps returns the ranges held by existing VEs. The caller holds the global lock.
func (s *Store) IDMaps() ([]IDMap, error) {
	ents, err := os.ReadDir(s.idmapDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []IDMap
	for _, e := range ents {
		var m IDMap
		if _, err := fmt.Sscanf(e.Name(), "%d-%d", &m.UID, &m.GID); err != nil {
			continue
		}
		path := filepath.Join(s.idmapDir(), e.Name())
		owner, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if id := strings.TrimSpace(string(owner)); id == "" || !s.Exists(id) {
			os.Remove(path) // its VE is gone
			continue
		}
		m.Size = 65536
		out = append(out, m)
	}
	return out, nil
}

// ClaimIDMap records that VE id holds range m. The caller holds the global lock.
func (s *Store) ClaimIDMap(id string, m IDMap) error {
	if err := os.MkdirAll(s.idmapDir(), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(s.idmapDir(), idmapName(m)), []byte(id+"\n"), 0o600)
}

// ReleaseIDMap forgets range m; a missing entry is not an error.
func (s *Store) ReleaseIDMap(m IDMap) error {
	if err := os.Remove(filepath.Join(s.idmapDir(), idmapName(m))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
