package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// Server is the Redis the suite runs against: a redis-server it started,
// an in-process miniredis, or the user's (external), which it never kills:
// it cuts the targets off through a proxy of its own instead.
type Server struct {
	Addr    string // where the targets connect
	Kind    string // "redis-server", "miniredis" or "external"
	Version string

	direct string // external: the user's Redis itself, not the proxy
	port   int
	dir    string
	cmd    *exec.Cmd
	mr     *miniredis.Miniredis
	proxy  *redistest.Proxy // external: the targets connect through it
	admin  *goredis.Client  // INFO and warm-up, never through the proxy
}

// StartServer starts redis-server from PATH on a free loopback port, or
// miniredis where there is none; with url, it uses the user's Redis.
func StartServer(url string) (*Server, error) {
	s := &Server{}
	switch {
	case url != "":
		opt, err := goredis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("bench: --redis: %w", err)
		}
		// The targets reach it through a plain proxy, with only its
		// address: a database, credentials or TLS would not reach them.
		if opt.DB != 0 || opt.Username != "" || opt.Password != "" || opt.TLSConfig != nil {
			return nil, fmt.Errorf("bench: --redis: a URL with a database number, credentials or TLS is not supported: the targets connect through the suite's proxy with the address alone")
		}
		s.Kind, s.direct = "external", opt.Addr
		if s.proxy, err = redistest.ListenProxy(opt.Addr); err != nil {
			return nil, err
		}
		s.Addr = s.proxy.Addr
		s.admin = goredis.NewClient(opt)
	default:
		if _, err := exec.LookPath("redis-server"); err == nil {
			s.Kind = "redis-server"
			if err := s.launch(); err != nil {
				return nil, err
			}
		} else {
			mr, err := miniredis.Run()
			if err != nil {
				return nil, err
			}
			s.Kind, s.mr, s.Addr = "miniredis", mr, mr.Addr()
		}
		s.admin = goredis.NewClient(&goredis.Options{Addr: s.Addr})
	}
	if s.Kind == "miniredis" {
		s.Version = "miniredis (in process)"
		return s, nil
	}
	info, err := s.admin.Info(context.Background(), "server").Result()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("bench: Redis does not answer: %w", err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			s.Version = "Redis " + v
		}
	}
	return s, nil
}

func (s *Server) launch() error {
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "sessiontier-bench-")
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		s.dir, s.port = dir, l.Addr().(*net.TCPAddr).Port
		l.Close()
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	}
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		return err
	}
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			return errors.New("bench: redis-server did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Cut makes Redis unreachable for the targets: it kills the redis-server
// it started, closes miniredis, or cuts its proxy to the user's Redis.
func (s *Server) Cut() {
	switch s.Kind {
	case "redis-server":
		s.cmd.Process.Kill()
		s.cmd.Wait()
	case "miniredis":
		s.mr.Close()
	default:
		s.proxy.Cut()
	}
}

// CanHang reports whether Pause can freeze the server: only a
// redis-server the suite started.
func (s *Server) CanHang() bool { return s.Kind == "redis-server" }

// Pause freezes the redis-server the suite started (SIGSTOP): connections
// stay open and nothing answers.
func (s *Server) Pause() { s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume undoes Pause (SIGCONT); the server keeps its data.
func (s *Server) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// Restore undoes Cut (a restarted server is empty).
func (s *Server) Restore() error {
	switch s.Kind {
	case "redis-server":
		return s.launch()
	case "miniredis":
		return s.mr.Restart()
	}
	s.proxy.Restore()
	return nil
}

// Commands returns the number of commands Redis has processed (INFO
// commandstats); -1 where it cannot tell.
func (s *Server) Commands(ctx context.Context) int64 {
	if s.Kind == "miniredis" {
		return -1
	}
	info, err := s.admin.Info(ctx, "commandstats").Result()
	if err != nil {
		return -1
	}
	var n int64
	for _, l := range strings.Split(info, "\n") {
		if _, rest, ok := strings.Cut(l, "calls="); ok && strings.HasPrefix(l, "cmdstat_") {
			calls, _, _ := strings.Cut(rest, ",")
			v, _ := strconv.ParseInt(calls, 10, 64)
			n += v
		}
	}
	return n
}

// CPU returns the CPU time Redis has used, user and system, in seconds
// (INFO cpu); -1 where it cannot tell. On a server the suite did not
// start, it is the whole server's, as Commands is.
func (s *Server) CPU(ctx context.Context) float64 {
	f := s.info(ctx, "cpu")
	user, err1 := strconv.ParseFloat(f["used_cpu_user"], 64)
	sys, err2 := strconv.ParseFloat(f["used_cpu_sys"], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return user + sys
}

// directAddr is where a client reaches Redis without the proxy of an
// external server: W6 measures Redis, not the proxy.
func (s *Server) directAddr() string {
	if s.direct != "" {
		return s.direct
	}
	return s.Addr
}

// info returns the fields of one INFO section; nil where Redis cannot
// tell (miniredis, an error).
func (s *Server) info(ctx context.Context, section string) map[string]string {
	if s.Kind == "miniredis" {
		return nil
	}
	text, err := s.admin.Info(ctx, section).Result()
	if err != nil {
		return nil
	}
	fields := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// Close stops what StartServer started; the user's Redis is left alone.
func (s *Server) Close() {
	if s.admin != nil {
		s.admin.Close()
	}
	switch s.Kind {
	case "redis-server":
		if s.cmd != nil && s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
		os.RemoveAll(s.dir)
	case "miniredis":
		s.mr.Close()
	case "external":
		s.proxy.Close()
	}
}
