package container

import (
	"context"

	"github.com/vectl/vectl/container/layout"
)

// LayoutImage keeps a VE's root in an ext4 image file of the VE's private area, loop-mounted:
// its size and inode count are hard limits (like OpenVZ's ploop).
const LayoutImage = layout.Image

// resizeImage changes a VE's disk space. A mounted image can only grow (online, with
// resize2fs); shrinking needs the VE stopped and fails if the data does not fit.
func (m *Manager) resizeImage(ctx context.Context, cfg *Config, size int64) error {
	return m.area(cfg).Resize(ctx, size)
}

// DiskUsage is the used and total space and inodes of a VE's image filesystem.
type DiskUsage = layout.Usage

// diskUsage reads it with statfs when the image is mounted.
func (m *Manager) diskUsage(cfg *Config) (DiskUsage, bool) {
	if cfg.Layout != LayoutImage {
		return DiskUsage{}, false
	}
	return layout.DiskUsage(m.store.RootDir(cfg.ID))
}
