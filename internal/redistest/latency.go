package redistest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LatencyProxy starts a TCP proxy to target that delays every chunk, each
// way, by what oneWay holds when the chunk arrives (order kept): a link
// with a round trip of 2*oneWay. It stops when t ends.
func LatencyProxy(t testing.TB, target string, oneWay *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	type chunk struct {
		due time.Time
		b   []byte
	}
	relay := func(dst, src net.Conn) {
		ch := make(chan chunk, 4096)
		go func() {
			for c := range ch {
				time.Sleep(time.Until(c.due)) // the link's latency, not a poll
				if _, err := dst.Write(c.b); err != nil {
					break
				}
			}
			dst.Close()
		}()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(time.Duration(oneWay.Load())), append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				close(ch)
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			go relay(s, c)
			go relay(c, s)
		}
	}()
	return ln.Addr().String()
}
