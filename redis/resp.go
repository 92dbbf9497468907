package redis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unsafe"
)

// A minimal RESP3 codec for the tracked connection (see tracked.go): it
// writes commands as arrays of bulk strings and reads any RESP3 value.

// ReplyError is an error reply of Redis read by the tracked connection.
// It satisfies go-redis's Error interface, so that IsReply and
// IsUnreachable treat it as any other reply.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// RedisError marks ReplyError as an answer of Redis.
func (ReplyError) RedisError() {}

// errProtocol is a reply the codec cannot read: the connection is dropped.
var errProtocol = errors.New("redis: unreadable reply on the tracked connection")

// appendCommand appends args as one command.
func appendCommand(b []byte, args ...[]byte) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// commandArg returns argument i of the first command encoded in b by
// appendCommand (0 is the command's name), a slice of b; nil if b holds
// no such argument.
func commandArg(b []byte, i int) []byte {
	line := func() []byte { // the next line's text, after its type byte
		end := bytes.Index(b, []byte("\r\n"))
		if end < 1 {
			b = nil
			return nil
		}
		l := b[1:end]
		b = b[end+2:]
		return l
	}
	n, err := strconv.Atoi(string(line()))
	if err != nil || i >= n {
		return nil
	}
	for ; i >= 0; i-- {
		size, err := strconv.Atoi(string(line()))
		if err != nil || size < 0 || len(b) < size+2 {
			return nil
		}
		arg := b[:size:size]
		b = b[size+2:]
		if i == 0 {
			return arg
		}
	}
	return nil
}

// value is one RESP3 value. kind is its type byte: '+' and '$' (str),
// '-' (err), ':' (n), '*', '~', '%' and '>' (elems; a map's keys and
// values alternate), '_' (null). Other scalars keep their text in str. A
// bulk string's bytes are also in bulk, which str shares: neither is ever
// modified.
type value struct {
	kind  byte
	str   string
	bulk  []byte
	n     int64
	err   error
	elems []value
	// equal: a bulk string read by readMatching (which keeps no copy of
	// it in str or bulk) was equal to the bytes expected.
	equal bool
}

// Bounds on what readValue accepts: Redis's own limit on a bulk string
// (proto-max-bulk-len), and a nesting depth well past any reply or push of
// the commands sent on the connection.
const (
	maxBulk  = 512 << 20
	maxDepth = 16
)

// readValue reads one value; attributes ('|') are read and dropped.
func readValue(r *bufio.Reader) (value, error) { return readNested(r, 0) }

// readMatching reads one value as readValue does, except a bulk string,
// which it compares with want as it reads, keeping no copy: the value of
// a verifying read (see perkey.go), which need not cost an allocation.
func readMatching(r *bufio.Reader, want []byte) (value, error) {
	if b, err := r.Peek(1); err != nil || b[0] != '$' {
		return readNested(r, 0)
	}
	line, err := readLine(r)
	if err != nil {
		return value{}, err
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n > maxBulk {
		return value{}, errProtocol
	}
	if n < 0 {
		return value{kind: '_'}, nil
	}
	equal := n == len(want)
	for left := n + 2; left > 0; { // the bytes, then CRLF
		p, err := r.Peek(min(left, r.Size()))
		if err != nil && len(p) == 0 {
			return value{}, err
		}
		if off := n + 2 - left; equal && off < n {
			k := min(len(p), n-off)
			equal = string(p[:k]) == string(want[off:off+k])
		}
		r.Discard(len(p))
		left -= len(p)
	}
	return value{kind: '$', equal: equal}, nil
}

// readNested reads one value found inside depth aggregates.
func readNested(r *bufio.Reader, depth int) (value, error) {
	if depth > maxDepth {
		return value{}, errProtocol
	}
	for {
		line, err := readLine(r)
		if err != nil {
			return value{}, err
		}
		if len(line) == 0 {
			return value{}, errProtocol
		}
		kind, rest := line[0], line[1:]
		switch kind {
		case '+', ',', '(', '#':
			if string(rest) == "OK" { // the reply to every SET: no allocation
				return value{kind: kind, str: "OK"}, nil
			}
			return value{kind: kind, str: string(rest)}, nil
		case '-':
			return value{kind: kind, err: ReplyError(rest)}, nil
		case '_':
			return value{kind: kind}, nil
		case ':':
			n, err := strconv.ParseInt(string(rest), 10, 64)
			if err != nil {
				return value{}, errProtocol
			}
			return value{kind: kind, n: n}, nil
		case '$', '=', '!':
			n, err := strconv.Atoi(string(rest))
			if err != nil || n > maxBulk {
				return value{}, errProtocol
			}
			if n < 0 {
				return value{kind: '_'}, nil // RESP2's null bulk string
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return value{}, err
			}
			if kind == '!' {
				return value{kind: '-', err: ReplyError(buf[:n])}, nil
			}
			b := buf[:n:n] // one allocation: str shares it, and nobody modifies it
			return value{kind: '$', str: unsafe.String(unsafe.SliceData(b), n), bulk: b}, nil
		case '*', '~', '%', '>', '|':
			n, err := strconv.Atoi(string(rest))
			if err != nil || n > 1<<20 {
				return value{}, errProtocol
			}
			if n < 0 {
				return value{kind: '_'}, nil // RESP2's null array
			}
			if kind == '%' || kind == '|' {
				n *= 2
			}
			v := value{kind: kind, elems: make([]value, 0, min(n, 64))} // grown as elements arrive, not on the length's word
			for range n {
				e, err := readNested(r, depth+1)
				if err != nil {
					return value{}, err
				}
				v.elems = append(v.elems, e)
			}
			if kind == '|' {
				continue // an attribute: the value follows
			}
			return v, nil
		}
		return value{}, fmt.Errorf("%w: type %q", errProtocol, kind)
	}
}

// readLine reads one line without its CRLF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errProtocol
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	return line[:len(line)-2], nil
}
