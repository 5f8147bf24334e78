package server

import "testing"

func TestConnectionCapDerived(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ set, limit, want int64 }{
		{0, 0, 0},                    // unknown limit: no cap
		{500, 1 << 20, 500},          // set wins
		{0, 1 << 20, 1<<20 - 104857}, // a tenth kept
		{0, 20000, 20000 - 2000},
		{0, 1024, 1024 - 256}, // at least 256 kept
		{0, 300, 150},         // too few: half
		{0, 20, 16},
	} {
		if got := connectionCap(c.set, c.limit); got != c.want {
			t.Errorf("connectionCap(%d, %d) = %d, want %d", c.set, c.limit, got, c.want)
		}
	}
	if got := streamCap(20000 - 2000); got != 13500 {
		t.Errorf("streamCap = %d, want 13500", got)
	}
	if descriptorLimit() <= 0 {
		t.Error("descriptorLimit() found no limit on this system")
	}
}
