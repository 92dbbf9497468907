package redis

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

// TestReadValueHostile: a reply the tracked connection's reader cannot
// trust (a corrupt stream, a hostile proxy) must end in errProtocol, which
// drops the connection, never in a panic of the reader's goroutine (which
// would end the process), an allocation sized by the input alone, or a
// recursion as deep as the input.
func TestReadValueHostile(t *testing.T) {
	cases := map[string]string{
		"a bulk length that overflows":     "$9223372036854775807\r\n",
		"a bulk length over Redis's limit": "$9000000000\r\nx\r\n",
		"arrays nested without end":        strings.Repeat("*1\r\n", 100_000) + ":1\r\n",
		"attributes nested without end":    strings.Repeat("|1\r\n", 100_000) + "+k\r\n+v\r\n:1\r\n",
	}
	for name, in := range cases {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: readValue panicked: %v", name, p)
				}
			}()
			if _, err := readValue(bufio.NewReader(strings.NewReader(in))); !errors.Is(err, errProtocol) {
				t.Errorf("%s: readValue error %v; want errProtocol", name, err)
			}
		}()
	}
}
