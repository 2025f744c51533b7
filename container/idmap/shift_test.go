package idmap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// shiftACL moves the ids of named user and group entries in the range, and only those.
func TestShiftACL(t *testing.T) {
	entry := func(tag uint16, perm uint16, id uint32) []byte {
		b := binary.LittleEndian.AppendUint16(nil, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		return binary.LittleEndian.AppendUint32(b, id)
	}
	acl := func(entries ...[]byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, aclVersion)
		for _, e := range entries {
			b = append(b, e...)
		}
		return b
	}
	in := acl(entry(aclUserObj, 7, 0xffffffff), entry(aclUser, 5, 100005), entry(aclUser, 5, 7), entry(aclGroupObj, 5, 0xffffffff),
		entry(aclGroup, 7, 200004), entry(aclGroup, 7, 100004), entry(aclMask, 7, 0xffffffff), entry(aclOther, 0, 0xffffffff))
	want := acl(entry(aclUserObj, 7, 0xffffffff), entry(aclUser, 5, 300005), entry(aclUser, 5, 7), entry(aclGroupObj, 5, 0xffffffff),
		entry(aclGroup, 7, 400004), entry(aclGroup, 7, 100004), entry(aclMask, 7, 0xffffffff), entry(aclOther, 0, 0xffffffff))
	if got := shiftACL(in, 100000, 200000, 300000, 400000); !bytes.Equal(got, want) {
		t.Errorf("shiftACL:\n got %x\nwant %x", got, want)
	}
}
