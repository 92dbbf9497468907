package redis

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// TestPerKeyCommands: what per-key mode sends for each request, and how
// it reads the two replies of a request back.
func TestPerKeyCommands(t *testing.T) {
	req := func(kind opKind, value string, verify bool, limit int) *request {
		r := &request{kind: kind, ttl: 1500 * time.Millisecond, verify: verify, limit: limit}
		if value != "" || kind == opSet {
			r.value = []byte(value)
		}
		return r
	}
	cmds := func(r *request) string {
		buf, second := appendRequest(nil, r, []byte("p:k"))
		if second {
			buf = appendCheck(buf, r, []byte("p:k"))
		}
		return strings.ReplaceAll(string(buf), "\r\n", " ")
	}
	for _, c := range []struct {
		r    *request
		want string
	}{
		{req(opSet, "abc", false, 0), "*5 $3 SET $3 p:k $3 abc $2 PX $4 1500 "},
		{req(opSet, "abc", true, 0), "*5 $3 SET $3 p:k $3 abc $2 PX $4 1500 *4 $8 GETRANGE $3 p:k $1 0 $1 3 "},
		{req(opSet, "", true, 0), "*5 $3 SET $3 p:k $0  $2 PX $4 1500 *2 $3 GET $3 p:k "}, // GETRANGE cannot tell "" from missing
		{req(opPExpire, "abc", true, 0), "*3 $7 PEXPIRE $3 p:k $4 1500 *4 $8 GETRANGE $3 p:k $1 0 $1 3 "},
		{req(opDel, "", false, 0), "*2 $3 DEL $3 p:k "},
		{req(opGet, "", false, 10), "*4 $8 GETRANGE $3 p:k $1 0 $2 10 *2 $4 PTTL $3 p:k "},
		{req(opGet, "", false, 0), "*2 $3 GET $3 p:k *2 $4 PTTL $3 p:k "},
	} {
		if got := cmds(c.r); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}

	read := func(s string) value {
		v, err := readValue(bufio.NewReader(strings.NewReader(s)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	set := req(opSet, "abc", true, 0)
	for _, c := range []struct {
		first, second string
		verified      bool
	}{
		{"+OK\r\n", "$3\r\nabc\r\n", true},
		{"+OK\r\n", "$4\r\nabcd\r\n", false}, // a longer value, written in between
		{"+OK\r\n", "$3\r\nabd\r\n", false},
		{"+OK\r\n", "$0\r\n\r\n", false}, // deleted in between
		{"-OOM no\r\n", "$3\r\nabc\r\n", false},
	} {
		set.first = read(c.first)
		second, err := readMatching(bufio.NewReader(strings.NewReader(c.second)), set.value) // as tracked.read reads it
		if err != nil {
			t.Fatal(err)
		}
		if rep := replyOf(set, second); rep.verified != c.verified {
			t.Errorf("SET %q then %q: verified %v; want %v", c.first, c.second, rep.verified, c.verified)
		}
	}
	empty := req(opSet, "", true, 0)
	empty.first = read("+OK\r\n")
	if rep := replyOf(empty, read("_\r\n")); rep.verified {
		t.Error("an empty value verified against a missing key")
	}
	get := req(opGet, "", false, 10)
	get.first = read("$0\r\n\r\n")
	if rep := replyOf(get, read(":-2\r\n")); rep.found {
		t.Error(`GETRANGE "" and PTTL -2: found; want missing`)
	}
	get.first = read("$2\r\nhi\r\n")
	if rep := replyOf(get, read(":900\r\n")); !rep.found || string(rep.value) != "hi" || rep.ttl != 900 {
		t.Errorf("GETRANGE hi and PTTL 900: %+v", rep)
	}
}
