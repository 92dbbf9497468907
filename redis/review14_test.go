package redis

import (
	"bufio"
	"strings"
	"testing"
)

// TestReview14VerifyingReadOfAnotherValue: a verifying read (per-key mode)
// that returns a value other than the one expected does not verify the
// write, also when the value expected is empty (a Set of an empty
// session, or a Touch of one): its read is a GET of the whole value.
func TestReview14VerifyingReadOfAnotherValue(t *testing.T) {
	for _, kind := range []opKind{opSet, opPExpire} {
		for _, want := range []string{"", "abc"} {
			r := &request{kind: kind, verify: true, value: []byte(want)}
			r.first = value{kind: '+', str: "OK"}
			if kind == opPExpire {
				r.first = value{kind: ':', n: 1}
			}
			v, err := readMatching(bufio.NewReader(strings.NewReader("$7\r\nforeign\r\n")), r.value)
			if err != nil {
				t.Fatal(err)
			}
			if rep := replyOf(r, v); rep.verified {
				t.Errorf("kind %d expecting %q: a verifying read of \"foreign\" verified the write", kind, want)
			}
		}
	}
}
