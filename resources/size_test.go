package resources

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		unit int64
		want int64
		bad  bool
	}{
		{"512M", 1, 512 * MiB, false},
		{"512m", 1, 512 * MiB, false},
		{"1G", 1, GiB, false},
		{"2T", 1, 2 * TiB, false},
		{"10K", 1, 10 * KiB, false},
		{"1P", 1, PiB, false},
		{"4096", 1, 4096, false},
		{"100", KiB, 100 * KiB, false},
		{"0", 1, 0, false},
		{"unlimited", 1, Unlimited, false},
		{"UNLIMITED", 1, Unlimited, false},
		{" 64M ", 1, 64 * MiB, false},
		{"12Q", 1, 0, true},
		{"", 1, 0, true},
		{"M", 1, 0, true},
		{"-5", 1, 0, true},
		{"+5", 1, 0, true},
		{"1.5G", 1, 0, true},
		{"9999999999P", 1, 0, true},
		{"1GB", 1, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in, tt.unit)
		if tt.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseSize(%q) = %d, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q, %d) = %d, %v; want %d", tt.in, tt.unit, got, err, tt.want)
		}
	}
}

func TestParseSizeErrorNamesValue(t *testing.T) {
	_, err := ParseSize("12Q", 1)
	if err == nil || !strings.Contains(err.Error(), `"12Q"`) {
		t.Fatalf("error %v does not name the value", err)
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{
		512 * MiB: "512M", GiB: "1G", 1500: "1500", 0: "0", Unlimited: "unlimited", 3 * KiB: "3K",
	} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
		if in >= 0 {
			back, err := ParseSize(FormatSize(in), 1)
			if err != nil || back != in {
				t.Errorf("round trip of %d: %d, %v", in, back, err)
			}
		}
	}
}
