package wire

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var e Encoder
	e.U32(1, 7)
	e.U64(2, 1<<40)
	e.String(3, "abc")
	e.String(3, "")
	e.Raw(4, []byte{1, 2, 3})
	if len(e.Bytes())%4 != 0 {
		t.Fatalf("message of %d bytes is not aligned", len(e.Bytes()))
	}
	attrs, err := DecodeHex(e.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if len(attrs) != 5 {
		t.Fatalf("%d attributes", len(attrs))
	}
	if v, err := attrs[0].U32(); v != 7 || err != nil {
		t.Errorf("u32 %d %v", v, err)
	}
	if v, err := attrs[1].U64(); v != 1<<40 || err != nil {
		t.Errorf("u64 %d %v", v, err)
	}
	if s, err := attrs[2].String(); s != "abc" || err != nil {
		t.Errorf("string %q %v", s, err)
	}
	if s, err := attrs[3].String(); s != "" || err != nil {
		t.Errorf("empty string %q %v", s, err)
	}
	if _, err := attrs[4].String(); err == nil {
		t.Error("raw bytes read as a string")
	}
	if _, err := attrs[4].U32(); err == nil {
		t.Error("3 bytes read as a u32")
	}
	for _, bad := range []string{"zz", "0300", "ff000100"} {
		if _, err := DecodeHex(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestHeader(t *testing.T) {
	h := Header("G_H", "TestX", []Const{{"A", 1}, {"B", 20}}, map[string]string{"S": "x y"})
	for _, want := range []string{"#ifndef G_H", "#define A 1\n", "#define B 20\n", `#define S "x y"`, "#endif"} {
		if !strings.Contains(h, want) {
			t.Errorf("header lacks %q:\n%s", want, h)
		}
	}
}
