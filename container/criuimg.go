package container

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/store"
)

// A dump of a user-namespace VE is restored by a criu that already runs inside the VE's
// pinned user namespace (and a UTS namespace of its own made there): CRIU cannot be told to
// restore into an existing user namespace (asked to join one, it still creates a new one
// nested inside, from where the VE's network namespace cannot be entered). CRIU restores a
// namespace when the dumped tasks' one differs from its own at dump time, which the image
// inventory records (root_ids); adoptNamespaces rewrites those ids to the VE init's, so
// that the restore keeps the user and UTS namespaces it runs in.

// Protobuf field numbers in CRIU's images (images/inventory.proto, images/core.proto).
const (
	invRootIDs  = 3  // inventory_entry.root_ids (task_kobj_ids_entry)
	idsUTSNS    = 8  // task_kobj_ids_entry.uts_ns_id
	idsUserNS   = 10 // task_kobj_ids_entry.user_ns_id
	idsTimeNS   = 12 // task_kobj_ids_entry.time_ns_id
	timensMono  = 1  // timens_entry.monotonic (a timespec: tv_sec 1, tv_nsec 2)
	timensBoot  = 2  // timens_entry.boottime
	imgMagicLen = 4  // the inventory starts with one magic number, other images with two
)

// pbField is one field of an encoded protobuf message.
type pbField struct {
	num  uint64
	wire uint64
	val  uint64 // varint
	data []byte // length-delimited, fixed32, fixed64
}

func parsePB(b []byte) ([]pbField, error) {
	var out []pbField
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("bad protobuf key")
		}
		b = b[n:]
		f := pbField{num: key >> 3, wire: key & 7}
		switch f.wire {
		case 0:
			f.val, n = binary.Uvarint(b)
			if n <= 0 {
				return nil, errors.New("bad protobuf varint")
			}
			b = b[n:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return nil, errors.New("bad protobuf length")
			}
			f.data, b = b[n:n+int(l)], b[n+int(l):]
		case 1, 5:
			size := map[uint64]int{1: 8, 5: 4}[f.wire]
			if len(b) < size {
				return nil, errors.New("short protobuf field")
			}
			f.data, b = b[:size], b[size:]
		default:
			return nil, fmt.Errorf("protobuf wire type %d", f.wire)
		}
		out = append(out, f)
	}
	return out, nil
}

func encodePB(fs []pbField) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.AppendUvarint(b, f.num<<3|f.wire)
		switch f.wire {
		case 0:
			b = binary.AppendUvarint(b, f.val)
		case 2:
			b = binary.AppendUvarint(b, uint64(len(f.data)))
			b = append(b, f.data...)
		default:
			b = append(b, f.data...)
		}
	}
	return b
}

// readImage returns the magic prefix and the first entry of a CRIU image (entries are a
// little-endian 32-bit size and a protobuf message).
func readImage(path string, magicLen int) ([]byte, []byte, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(b) < magicLen+4 {
		return nil, nil, nil, fmt.Errorf("%s: too short", path)
	}
	n := int(binary.LittleEndian.Uint32(b[magicLen:]))
	if len(b) < magicLen+4+n {
		return nil, nil, nil, fmt.Errorf("%s: truncated", path)
	}
	return b[:magicLen], b[magicLen+4 : magicLen+4+n], b[magicLen+4+n:], nil
}

// adoptNamespaces rewrites the inventory of the dump in dir so that the user and UTS
// namespaces of the VE's init (pid 1) count as the restoring criu's own.
func adoptNamespaces(dir string) error {
	_, ids, _, err := readImage(filepath.Join(dir, "ids-1.img"), 2*imgMagicLen)
	if err != nil {
		return err
	}
	idf, err := parsePB(ids)
	if err != nil {
		return fmt.Errorf("ids-1.img: %w", err)
	}
	want := map[uint64]uint64{}
	for _, f := range idf {
		if f.wire == 0 && (f.num == idsUserNS || f.num == idsUTSNS) {
			want[f.num] = f.val
		}
	}
	if len(want) != 2 {
		return errors.New("ids-1.img: no user or UTS namespace id")
	}
	path := filepath.Join(dir, "inventory.img")
	magic, inv, rest, err := readImage(path, imgMagicLen)
	if err != nil {
		return err
	}
	fs, err := parsePB(inv)
	if err != nil {
		return fmt.Errorf("inventory.img: %w", err)
	}
	done := 0
	for i, f := range fs {
		if f.num != invRootIDs || f.wire != 2 {
			continue
		}
		root, err := parsePB(f.data)
		if err != nil {
			return fmt.Errorf("inventory.img: root_ids: %w", err)
		}
		for j, r := range root {
			if v, ok := want[r.num]; ok && r.wire == 0 {
				root[j].val = v
				done++
			}
		}
		fs[i].data = encodePB(root)
	}
	if done != 2 {
		return errors.New("inventory.img: no root user or UTS namespace id")
	}
	entry := encodePB(fs)
	out := append(append([]byte(nil), magic...), binary.LittleEndian.AppendUint32(nil, uint32(len(entry)))...)
	out = append(append(out, entry...), rest...)
	return store.WriteFileAtomic(path, out, 0o600)
}

// dumpedClocks returns the monotonic and boot-time clocks, in nanoseconds, that the time
// namespace of the VE dumped in dir showed at the dump (images timens-N.img, N the init's
// time_ns_id in ids-1.img). ok is false for a dump without one (a VE in the host's time
// namespace, made before VEs had their own).
func dumpedClocks(dir string) (mono, boot int64, ok bool, err error) {
	_, ids, _, err := readImage(filepath.Join(dir, "ids-1.img"), 2*imgMagicLen)
	if err != nil {
		return 0, 0, false, err
	}
	idf, err := parsePB(ids)
	if err != nil {
		return 0, 0, false, fmt.Errorf("ids-1.img: %w", err)
	}
	var nsID uint64
	for _, f := range idf {
		if f.wire == 0 && f.num == idsTimeNS {
			nsID = f.val
		}
	}
	path := filepath.Join(dir, fmt.Sprintf("timens-%d.img", nsID))
	if _, serr := os.Stat(path); nsID == 0 || errors.Is(serr, os.ErrNotExist) {
		return 0, 0, false, nil
	}
	_, entry, _, err := readImage(path, 2*imgMagicLen)
	if err != nil {
		return 0, 0, false, err
	}
	fs, err := parsePB(entry)
	if err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	clocks := map[uint64]int64{}
	for _, f := range fs {
		if f.wire != 2 || (f.num != timensMono && f.num != timensBoot) {
			continue
		}
		ts, err := parsePB(f.data)
		if err != nil {
			return 0, 0, false, fmt.Errorf("%s: %w", path, err)
		}
		var ns int64
		for _, t := range ts {
			switch t.num {
			case 1:
				ns += int64(t.val) * 1e9
			case 2:
				ns += int64(t.val)
			}
		}
		clocks[f.num] = ns
	}
	m, okm := clocks[timensMono]
	b, okb := clocks[timensBoot]
	if !okm || !okb {
		return 0, 0, false, fmt.Errorf("%s: no monotonic or boot-time clock", path)
	}
	return m, b, true, nil
}

// clockOffset is the offset, in whole seconds rounded up, that makes the host's clock
// (a unix clock id) read dumped nanoseconds in a new time namespace: the restored VE's
// clock goes on from the dump, never back (up to a second forward).
func clockOffset(clock int32, dumped int64) (int64, error) {
	var now unix.Timespec
	if err := unix.ClockGettime(clock, &now); err != nil {
		return 0, err
	}
	return ceilSeconds(dumped - now.Nano()), nil
}

// ceilSeconds rounds nanoseconds up to whole seconds.
func ceilSeconds(ns int64) int64 {
	s := ns / 1e9
	if ns%1e9 > 0 {
		s++
	}
	return s
}
