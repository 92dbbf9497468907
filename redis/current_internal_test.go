package redis

import (
	"bytes"
	"testing"
)

// TestSumNamesAValueAndItsLength: Base spells 24 hex digits, whose length
// part is the value's; no Sum is all zeros (the absent key's digest);
// values that differ get different sums.
func TestSumNamesAValueAndItsLength(t *testing.T) {
	seen := map[[SumSize]byte]bool{}
	for _, v := range [][]byte{nil, {0}, []byte("a"), []byte("b"), bytes.Repeat([]byte("x"), 1<<20)} {
		s := Sum(v)
		if s == [SumSize]byte{} {
			t.Errorf("Sum of %d bytes is all zeros", len(v))
		}
		b := Base(s)
		if len(b) != 2*SumSize || baseLen(b) != int64(len(v)) {
			t.Errorf("Base of %d bytes = %q, of length %d", len(v), b, baseLen(b))
		}
		if seen[s] {
			t.Errorf("two values share the sum %q", b)
		}
		seen[s] = true
		if Sum(v) != s {
			t.Errorf("Sum of %d bytes changed from one call to the next", len(v))
		}
	}
	for _, b := range []string{"", "-", "zz" + Base(Sum(nil))[2:], Base(Sum(nil))[1:]} {
		if n := baseLen(b); n != -1 {
			t.Errorf("baseLen(%q) = %d; want -1", b, n)
		}
	}
}
