package bench

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"time"
)

// wire counts, from the client's side, the round trips a target begins:
// every write to one of its connections sends one command or one pipeline
// of them (a client that pipelines the requests of many callers shares one
// round trip between them). Handshakes and the pings of idle connections
// count too; they are few.
type wire struct{ writes atomic.Int64 }

// RoundTrips returns the writes counted so far.
func (w *wire) RoundTrips() int64 { return w.writes.Load() }

// dial is a go-redis Dialer whose connections count their writes.
func (w *wire) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 5 * time.Minute}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, w: w}, nil
}

// dialRueidis is the same for rueidis.
func (w *wire) dialRueidis(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, w: w}, nil
}

type countedConn struct {
	net.Conn
	w *wire
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.w.writes.Add(1)
	return c.Conn.Write(b)
}

// roundTripper is a target that counts its round trips.
type roundTripper interface{ RoundTrips() int64 }
