package codecs

import (
	"bytes"
	"math"
	"testing"
)

func TestVarintEncoding(t *testing.T) {
	// Values and encodings from the Protocol Buffers zig-zag definition
	// that Kafka's varint and varlong follow.
	tests := []struct {
		v   int64
		enc []byte
	}{
		{0, []byte{0x00}},
		{-1, []byte{0x01}},
		{1, []byte{0x02}},
		{-2, []byte{0x03}},
		{63, []byte{0x7e}},
		{-64, []byte{0x7f}},
		{64, []byte{0x80, 0x01}},
		{300, []byte{0xd8, 0x04}},
		{math.MaxInt32, []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}},
		{math.MinInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{math.MaxInt64, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{math.MinInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range tests {
		if got := AppendVarint(nil, tt.v); !bytes.Equal(got, tt.enc) {
			t.Errorf("AppendVarint(%d) = %x, want %x", tt.v, got, tt.enc)
		}
		if got := VarintLen(tt.v); got != len(tt.enc) {
			t.Errorf("VarintLen(%d) = %d, want %d", tt.v, got, len(tt.enc))
		}
		if got, n := Varint(tt.enc); got != tt.v || n != len(tt.enc) {
			t.Errorf("Varint(%x) = %d, %d, want %d, %d", tt.enc, got, n, tt.v, len(tt.enc))
		}
	}
}

func TestVarintErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		n    int
	}{
		{"empty", nil, 0},
		{"truncated", []byte{0x80, 0x80}, 0},
		{"ten continuation bytes", bytes.Repeat([]byte{0x80}, 11), -10},
		{"tenth byte too big", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, -10},
	}
	for _, tt := range tests {
		if _, n := Varint(tt.in); n != tt.n {
			t.Errorf("%s: Varint(%x) n = %d, want %d", tt.name, tt.in, n, tt.n)
		}
	}
	if _, n := Varint32(AppendVarint(nil, math.MaxInt32+1)); n >= 0 {
		t.Errorf("Varint32(MaxInt32+1) n = %d, want < 0", n)
	}
	if v, n := Varint32(AppendVarint(nil, math.MinInt32)); v != math.MinInt32 || n != 5 {
		t.Errorf("Varint32(MinInt32) = %d, %d", v, n)
	}
}

func FuzzVarint(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(-1))
	f.Add(int64(math.MaxInt64))
	f.Add(int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, v int64) {
		enc := AppendVarint(nil, v)
		if len(enc) != VarintLen(v) {
			t.Fatalf("len(AppendVarint(%d)) = %d, VarintLen = %d", v, len(enc), VarintLen(v))
		}
		got, n := Varint(enc)
		if got != v || n != len(enc) {
			t.Fatalf("Varint(AppendVarint(%d)) = %d, %d", v, got, n)
		}
	})
}
