// Package redistest provides a harness that runs real redis-server
// processes for tests: each on a free loopback port (never 6379), with
// kill, pause (SIGSTOP), resume and restart, stopped when the test ends.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// defaultRedisPort is never used: a server there is not the test's.
const defaultRedisPort = 6379

// Server is one redis-server process owned by a test.
type Server struct {
	Addr string // 127.0.0.1:port

	tb      testing.TB
	port    int
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	paused  bool
	durable bool // append-only file with fsync always: Kill loses nothing
}

// Start starts a redis-server on a free loopback port and stops it when tb
// ends. Where redis-server is not installed the test is skipped, except
// under CI=true, where it fails.
func Start(tb testing.TB) *Server { tb.Helper(); return start(tb, false) }

// StartDurable is Start with an append-only file synced on every write, so
// that a server killed with Kill comes back from Restart with its data.
func StartDurable(tb testing.TB) *Server { tb.Helper(); return start(tb, true) }

func start(tb testing.TB, durable bool) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redistest: redis-server is not installed (CI=true): %v", err)
		}
		tb.Skip("redistest: redis-server is not installed; `make test` installs it")
	}
	s := &Server{tb: tb, dir: tb.TempDir(), durable: durable}
	var err error
	for range 5 { // the free port can be taken between probing and binding
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	tb.Cleanup(s.stop)
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	if s.port == defaultRedisPort {
		return fmt.Errorf("refusing Redis's default port, which may hold a server the test did not start")
	}
	aof := []string{"--appendonly", "no"}
	if s.durable {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", s.dir,
		"--daemonize", "no", "--loglevel", "warning"}, aof...)
	cmd := exec.Command("redis-server", args...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited, s.paused = cmd, make(chan struct{}), false
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(s.exited)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server on port %d exited at start", s.port)
		default:
		}
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within 10s", s.port)
		}
		time.Sleep(5 * time.Millisecond) // polling for readiness
	}
}

func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	if s.paused {
		s.cmd.Process.Signal(syscall.SIGCONT)
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

func (s *Server) stop() { s.kill() }

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	s.tb.Helper()
	if s.cmd == nil {
		s.tb.Fatal("redistest: Kill of a server that is not running")
	}
	s.kill()
}

// Pause freezes the server with SIGSTOP: connections stay open and nothing
// answers, as with a hung Redis.
func (s *Server) Pause() {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.tb.Fatalf("redistest: SIGSTOP: %v", err)
	}
	s.paused = true
}

// Resume undoes Pause with SIGCONT.
func (s *Server) Resume() {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.tb.Fatalf("redistest: SIGCONT: %v", err)
	}
	s.paused = false
}

// Restart starts the server again on the same port after Kill: with the
// data it had if it was started durable, empty otherwise.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.cmd != nil {
		s.kill()
	}
	if err := s.start(); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

// Busy makes the server run a script past busy-reply-threshold (set to
// 1 ms) on a connection of its own, so that it answers BUSY to every other
// command (INFO and PING included; SCRIPT KILL excepted) until stop, which
// kills the script and may be called more than once; the test's end calls
// it too.
func (s *Server) Busy() (stop func()) {
	s.tb.Helper()
	ctx := context.Background()
	admin := s.Client()
	if err := admin.ConfigSet(ctx, "busy-reply-threshold", "1").Err(); err != nil {
		s.tb.Fatalf("redistest: busy-reply-threshold: %v", err)
	}
	looper := goredis.NewClient(&goredis.Options{Addr: s.Addr, ReadTimeout: -1})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		looper.Eval(ctx, "while true do end", nil)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for {
				err := admin.Do(ctx, "SCRIPT", "KILL").Err()
				if err == nil || strings.Contains(err.Error(), "NOTBUSY") {
					break
				}
			}
			<-ended
			looper.Close()
		})
	}
	s.tb.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := admin.Ping(ctx).Err(); err != nil && strings.HasPrefix(err.Error(), "BUSY") {
			return stop
		}
		if time.Now().After(deadline) {
			s.tb.Fatal("redistest: the server never answered BUSY")
		}
	}
}

// Client returns a plain go-redis client of the server, closed when the
// test ends.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr})
	s.tb.Cleanup(func() { c.Close() })
	return c
}
