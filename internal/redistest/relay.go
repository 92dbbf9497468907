package redistest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Relay starts a TCP proxy on a free loopback port to target and returns
// its address. For each connection, toServer copies what the client sends
// and toClient what the server answers (io.Copy when nil), each returning
// when its source fails; both sides are then closed. It stops, and waits
// for its goroutines, when tb ends.
func Relay(tb testing.TB, target string, toServer, toClient func(dst, src net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	copyAll := func(dst, src net.Conn) { io.Copy(dst, src) }
	if toServer == nil {
		toServer = copyAll
	}
	if toClient == nil {
		toClient = copyAll
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	pipe := func(dst, src net.Conn, copy func(dst, src net.Conn)) {
		defer wg.Done()
		copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Go(func() {
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
			wg.Add(2)
			go pipe(s, c, toServer)
			go pipe(c, s, toClient)
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// LatencyProxy starts a Relay to target that delays every chunk, each way,
// by what oneWay holds when the chunk arrives (order kept): a link with a
// round trip of 2*oneWay.
func LatencyProxy(tb testing.TB, target string, oneWay *atomic.Int64) string {
	tb.Helper()
	type chunk struct {
		due time.Time
		b   []byte
	}
	delay := func(dst, src net.Conn) {
		ch := make(chan chunk, 4096)
		written := make(chan struct{})
		go func() {
			defer close(written)
			failed := false
			for c := range ch { // drained to the end, so that the reader never blocks
				if !failed {
					time.Sleep(time.Until(c.due)) // the link's latency, not a poll
					_, err := dst.Write(c.b)
					failed = err != nil
				}
			}
		}()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(time.Duration(oneWay.Load())), append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				close(ch)
				<-written
				return
			}
		}
	}
	return Relay(tb, target, delay, delay)
}
