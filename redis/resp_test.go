package redis

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadValue(t *testing.T) {
	cases := []struct {
		in   string
		want func(value) bool
	}{
		{"+OK\r\n", func(v value) bool { return v.kind == '+' && v.str == "OK" }},
		{"-ERR nope\r\n", func(v value) bool { return IsReply(v.err) && v.err.Error() == "ERR nope" }},
		{"!9\r\nERR bulky\r\n", func(v value) bool { return IsReply(v.err) && v.err.Error() == "ERR bulky" }},
		{":42\r\n", func(v value) bool { return v.kind == ':' && v.n == 42 }},
		{"$3\r\na\r\n\r\n", func(v value) bool { return v.kind == '$' && v.str == "a\r\n" }},
		{"$0\r\n\r\n", func(v value) bool { return v.kind == '$' && v.bulk != nil && len(v.bulk) == 0 }}, // empty, not missing
		{"$-1\r\n", func(v value) bool { return v.kind == '_' }},
		{"_\r\n", func(v value) bool { return v.kind == '_' }},
		{"%1\r\n+server\r\n$5\r\nredis\r\n", func(v value) bool { return v.kind == '%' && len(v.elems) == 2 && v.elems[1].str == "redis" }},
		{">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\np:a\r\n$3\r\np:b\r\n", func(v value) bool {
			return v.kind == '>' && v.elems[0].str == "invalidate" && len(v.elems[1].elems) == 2 && v.elems[1].elems[1].str == "p:b"
		}},
		{">2\r\n$10\r\ninvalidate\r\n_\r\n", func(v value) bool { return v.kind == '>' && v.elems[1].kind == '_' }},
		{"|1\r\n+key\r\n+val\r\n:7\r\n", func(v value) bool { return v.kind == ':' && v.n == 7 }}, // an attribute, then the value
	}
	for _, c := range cases {
		v, err := readValue(bufio.NewReader(strings.NewReader(c.in)))
		if err != nil || !c.want(v) {
			t.Errorf("readValue(%q) = %+v, %v", c.in, v, err)
		}
	}
	for _, bad := range []string{"?1\r\n", ":x\r\n", "+OK\n", "*2\r\n:1\r\n", "$5\r\nab"} {
		if _, err := readValue(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readValue(%q) read a value", bad)
		} else if !errors.Is(err, errProtocol) && err.Error() != "EOF" && err.Error() != "unexpected EOF" {
			t.Errorf("readValue(%q): %v", bad, err)
		}
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []byte("SET"), []byte("k"), []byte("")))
	if want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"; got != want {
		t.Fatalf("appendCommand = %q; want %q", got, want)
	}
}

// readMatching compares a bulk string with the bytes expected as it reads
// it, across reads of the buffer, and reads every other value as
// readValue does; the stream stays aligned on the next value either way.
func TestReadMatching(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 300) // 4800 bytes: past the 16-byte buffer below
	other := long[:len(long)-1] + "X"
	cases := []struct {
		in, want string
		equal    bool
		kind     byte
	}{
		{"$3\r\nabc\r\n", "abc", true, '$'},
		{"$3\r\nabd\r\n", "abc", false, '$'},
		{"$4\r\nabcd\r\n", "abc", false, '$'}, // GETRANGE's one byte more
		{"$2\r\nab\r\n", "abc", false, '$'},
		{"$0\r\n\r\n", "", true, '$'},
		{"$0\r\n\r\n", "a", false, '$'},
		{"$4800\r\n" + long + "\r\n", long, true, '$'},
		{"$4800\r\n" + other + "\r\n", long, false, '$'},
		{"_\r\n", "abc", false, '_'},
		{"$-1\r\n", "abc", false, '_'},
		{"-ERR nope\r\n", "abc", false, '-'},
		{">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nabc\r\n", "abc", false, '>'}, // a push is read whole
	}
	for _, c := range cases {
		r := bufio.NewReaderSize(strings.NewReader(c.in+":7\r\n"), 16)
		v, err := readMatching(r, []byte(c.want))
		if err != nil || v.equal != c.equal || v.kind != c.kind {
			t.Errorf("readMatching(%.30q, %.10q) = kind %q equal %v, %v; want kind %q equal %v", c.in, c.want, v.kind, v.equal, err, c.kind, c.equal)
			continue
		}
		if next, err := readValue(r); err != nil || next.n != 7 {
			t.Errorf("after readMatching(%.30q): next value %+v, %v; want :7", c.in, next, err)
		}
	}
	if _, err := readMatching(bufio.NewReader(strings.NewReader("$5\r\nab")), []byte("abcde")); err == nil {
		t.Errorf("readMatching read a truncated bulk string")
	}
}

func TestCommandArg(t *testing.T) {
	cmd := appendCommand(nil, []byte("SET"), []byte("k"), []byte("a\r\nvalue"), []byte("PX"), []byte("5"))
	cmd = appendCommand(cmd, []byte("GET"), []byte("k"))
	for i, want := range []string{"SET", "k", "a\r\nvalue", "PX", "5"} {
		if got := commandArg(cmd, i); string(got) != want {
			t.Errorf("argument %d: %q, want %q", i, got, want)
		}
	}
	if got := commandArg(cmd, 5); got != nil {
		t.Errorf("argument 5 of 5: %q, want nil", got)
	}
	if got := commandArg(appendCommand(nil, []byte("SET"), []byte("k"), []byte{}), 2); got == nil || len(got) != 0 {
		t.Errorf("an empty argument: %q", got)
	}
	for _, bad := range []string{"", "*3\r\n$3\r\nSET\r\n$9\r\nk", "*x\r\n", "*3\r\n$-1\r\n"} {
		if got := commandArg([]byte(bad), 2); got != nil {
			t.Errorf("%q: %q, want nil", bad, got)
		}
	}
}
