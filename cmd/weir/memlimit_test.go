package main

import "testing"

func TestMemoryLimit(t *testing.T) {
	const budget = 66 << 20
	for _, tc := range []struct {
		flag   string
		envSet bool
		budget int64
		want   int64
		err    bool
	}{
		{"auto", false, budget, budget + memBase, false},
		{"auto", true, budget, 0, false}, // GOMEMLIMIT wins
		{"auto", false, 0, 0, false},     // nothing bounded by a setting
		{"none", false, budget, 0, false},
		{"0", false, budget, 0, false},
		{"256MiB", true, budget, 256 << 20, false},
		{"lots", false, budget, 0, true},
	} {
		got, err := memoryLimit(tc.flag, tc.envSet, tc.budget)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("memoryLimit(%q, %v, %d) = %d, %v; want %d, error %v", tc.flag, tc.envSet, tc.budget, got, err, tc.want, tc.err)
		}
	}
}
