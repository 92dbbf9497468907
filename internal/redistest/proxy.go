package redistest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a free loopback port in front of a server: Cut
// cuts off whoever connects through it (a partial outage) while other
// clients still reach the server directly; Hold delays one packet.
type Proxy struct {
	Addr string

	target string
	ln     net.Listener
	wg     sync.WaitGroup
	closed chan struct{} // closed by Close: releases what is held
	close  sync.Once

	mu    sync.Mutex            // guards cut, conns and hold
	cut   bool                  // new connections are closed at once
	conns map[net.Conn]struct{} // open connections, both sides
	hold  *Hold                 // not nil: the next chunk that matches is held
}

// Hold is a chunk of bytes a client sent that the proxy holds back from the
// server until Release: a packet delayed in the network.
type Hold struct {
	match   []byte
	held    chan struct{}
	ended   chan struct{} // closed once the client has ended its side of the held connection
	release chan struct{}
	once    sync.Once
	addr    string

	mu     sync.Mutex // guards behind and client
	behind []byte     // what the client sent after the held chunk, held too
	client net.Conn   // the proxy's connection to the client that sent it
}

// Held is closed once a chunk is held.
func (h *Hold) Held() <-chan struct{} { return h.held }

// Ended is closed once the client has ended its side of the held
// connection (closed it, or reset it) while the chunk is held: a client
// that gave up on what it sent.
func (h *Hold) Ended() <-chan struct{} { return h.ended }

// Addr waits until a chunk is held and returns the address of the proxy's
// connection to the server that will carry it, as the server sees its
// client (the addr field of CLIENT LIST).
func (h *Hold) Addr() string { <-h.held; return h.addr }

// Behind returns a copy of what the client has sent on the held
// connection since the held chunk: held back with it, in order.
func (h *Hold) Behind() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.behind)
}

// CutClient closes the proxy's connection to the client that sent the
// held chunk, once a chunk is held: the client sees its connection broken
// at once, while the chunk, still held, is forwarded on Release.
func (h *Hold) CutClient() {
	<-h.held
	h.mu.Lock()
	defer h.mu.Unlock()
	h.client.Close()
}

// Release forwards the held chunk (if the connection to the server is
// still open) and lets the connection carry on.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }

// Hold holds back the next chunk of bytes that a client sends through the
// proxy and that contains match, until Release or Close. What the client
// sends after it on that connection, its FIN included, waits behind it, as
// in TCP.
func (p *Proxy) Hold(match []byte) *Hold {
	h := &Hold{match: match, held: make(chan struct{}), ended: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.hold = h
	p.mu.Unlock()
	return h
}

// NewProxy starts a proxy to target, stopped when tb ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := ListenProxy(target)
	if err != nil {
		tb.Fatalf("redistest: proxy: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// ListenProxy starts a proxy to target; Close stops it.
func ListenProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[net.Conn]struct{}), closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(c, s, false)
		go p.pipe(s, c, true)
	}
}

func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst; toServer: from a client, where Hold applies.
func (p *Proxy) pipe(dst, src net.Conn, toServer bool) {
	defer p.wg.Done()
	if toServer {
		p.forward(dst, src)
	} else {
		io.Copy(dst, src)
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *Proxy) forward(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if h := p.holds(chunk); h != nil {
				h.addr = dst.LocalAddr().String()
				h.mu.Lock()
				h.client = src
				h.mu.Unlock()
				close(h.held)
				var ok bool
				if chunk, err, ok = p.keep(src, h, chunk); !ok {
					return
				}
			}
			if _, err := dst.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// keep holds chunk back until h is released, reading on what src sends
// behind it into h.behind (so that Behind can tell it), until src ends.
// It returns the chunk and what followed it, and src's error if it ended;
// !ok: the proxy was closed, and what was held is dropped.
func (p *Proxy) keep(src net.Conn, h *Hold, chunk []byte) (all []byte, end error, ok bool) {
	all = bytes.Clone(chunk)
	buf := make([]byte, 64<<10)
	for end == nil {
		select {
		case <-h.release:
			src.SetReadDeadline(time.Time{})
			return all, nil, true
		case <-p.closed:
			return nil, nil, false
		default:
		}
		src.SetReadDeadline(time.Now().Add(time.Millisecond)) // polls release between reads
		n, err := src.Read(buf)
		if n > 0 {
			all = append(all, buf[:n]...)
			h.mu.Lock()
			h.behind = append(h.behind, buf[:n]...)
			h.mu.Unlock()
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			end = err // sent behind the chunk, as TCP would: after it
			close(h.ended)
		}
	}
	select {
	case <-h.release:
		return all, end, true
	case <-p.closed:
		return nil, nil, false
	}
}

// holds returns the Hold that chunk answers, if any, and clears it.
func (p *Proxy) holds(chunk []byte) *Hold {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hold
	if h == nil || !bytes.Contains(chunk, h.match) {
		return nil
	}
	p.hold = nil
	return h
}

// Cut closes every connection through the proxy and refuses new ones (they
// are accepted and closed at once) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection through it; a chunk
// still held is dropped.
func (p *Proxy) Close() {
	p.close.Do(func() { close(p.closed) })
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
