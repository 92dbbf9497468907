// Command sessiontier is sessiontier's command-line tool.
//
//	sessiontier bench [flags]   run the benchmark suite and write a report
//
// Run `sessiontier bench -h` for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/schollz/progressbar/v3"
	"github.com/sessiontier/sessiontier/bench"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "bench" {
		fmt.Fprintln(os.Stderr, "usage: sessiontier bench [flags]    (sessiontier bench -h for the flags)")
		os.Exit(2)
	}
	// go-redis logs every failed dial; the outage workload causes them on
	// purpose, and the report counts what callers saw.
	goredis.SetLogger(&logging.VoidLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := runBench(ctx, os.Args[2:], os.Stderr)
	stop()
	os.Exit(code)
}

// runBench runs the bench subcommand and returns the exit code: 0, 1 for
// a failed run, 2 for bad flags.
func runBench(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sessiontier bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		duration  = fs.Duration("duration", 10*time.Second, "how long each workload runs on each target")
		workers   = fs.Int("workers", 64, "concurrent workers")
		sessions  = fs.Int("sessions", 100_000, "number of sessions")
		size      = fs.Int("size", 1024, "bytes per session")
		workloads = fs.String("workloads", "W1,W2,W3,W4,W5,W6", "workloads to run, of W1..W6")
		targets   = fs.String("targets", targetNames(), "targets to compare")
		quick     = fs.Bool("quick", false, "a smoke run in under a minute: 0.5s per workload, 10,000 sessions, 5 revocations, W6 with 0, 1 and 10 instances")
		redisURL  = fs.String("redis", "", "redis:// URL of a Redis to use instead of starting redis-server (W4 then cuts the targets off through a proxy, never touching the server)")
		out       = fs.String("out", "", "report folder (default: bench-report-<date>)")
		seed      = fs.Int64("seed", 0, "seed of the order the targets run in (default: from the clock)")
		runs      = fs.Int("runs", 3, "interleaved repetitions of every workload; the report gives medians and ranges (--quick: 1)")
		rate      = fs.Int("rate", 0, "W1..W3 in open loop at this many requests per second in all, latency from each intended start (default: closed loop)")
		cpuprof   = fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (run one target and workload to profile it alone)")
		memprof   = fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
		traceOut  = fs.String("trace", "", "write an execution trace of the whole run to this file (go tool trace; keep the run short)")
		instances = fs.String("instances", "0,1,10,40", "W6: the numbers of sessiontier instances attached, a point each (--quick: 0,1,10)")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sessiontier bench [flags]\n\nRuns W1..W6 against sessiontier and its peers on one Redis and writes a Markdown report with PNG plots.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	counts, countsErr := ints(*instances)
	cfg := bench.Config{Instances: counts, Duration: *duration, Workers: *workers, Sessions: *sessions, ValueSize: *size,
		Workloads: split(*workloads), Targets: split(*targets), Trials: 100, Seed: *seed, Runs: *runs, Rate: *rate}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	cfg.OutagePart = max(cfg.Duration/2, time.Second)
	if *quick {
		cfg.Duration, cfg.OutagePart, cfg.Sessions, cfg.Trials = 500*time.Millisecond, 500*time.Millisecond, min(cfg.Sessions, 10_000), 5
		if !flagSet(fs, "runs") {
			cfg.Runs = 1
		}
		if !flagSet(fs, "instances") {
			cfg.Instances = []int{0, 1, 10}
		}
	}
	cfg.Budget = 4 * int64(cfg.Sessions) * int64(cfg.ValueSize+256) // the working set, with room
	if err := errors.Join(countsErr, check(cfg, fs.NArg())); err != nil {
		fmt.Fprintf(stderr, "sessiontier bench: %v\n", err)
		fs.Usage()
		return 2
	}
	if *out == "" {
		*out = "bench-report-" + time.Now().Format("20060102-150405")
	}
	server, err := bench.StartServer(*redisURL)
	if err != nil {
		fmt.Fprintf(stderr, "sessiontier bench: %v\n", err)
		return 1
	}
	defer server.Close()
	if server.Kind == "miniredis" {
		fmt.Fprintln(stderr, "sessiontier bench: no redis-server on PATH: running against miniredis, in process (install redis-server for real figures)")
	}
	measured := commit() // before the run: the tree may change while it runs
	for _, o := range []struct {
		path  string
		start func(io.Writer) error
		end   func()
	}{{*cpuprof, pprof.StartCPUProfile, pprof.StopCPUProfile}, {*traceOut, trace.Start, trace.Stop}} {
		if o.path == "" {
			continue
		}
		stop, err := startFile(o.path, o.start, o.end)
		if err != nil {
			fmt.Fprintf(stderr, "sessiontier bench: %v\n", err)
			return 1
		}
		defer stop() // at the end of the run
	}
	if *memprof != "" {
		defer func() {
			if f, err := os.Create(*memprof); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	p := &progress{w: stderr, tty: isTerminal(stderr)}
	rep, err := bench.Run(ctx, cfg, server, p)
	p.finish()
	if err != nil {
		fmt.Fprintf(stderr, "sessiontier bench: %v\n", err)
		return 1
	}
	rep.Commit = measured
	command := "sessiontier bench " + strings.Join(args, " ")
	if err := rep.Write(*out, strings.TrimSpace(command)); err != nil {
		fmt.Fprintf(stderr, "sessiontier bench: writing the report: %v\n", err)
		return 1
	}
	fmt.Fprintln(stderr)
	if err := rep.Summary(stderr); err != nil {
		return 1
	}
	fmt.Fprintf(stderr, "\nreport written to %s/README.md\n", *out)
	return 0
}

// startFile creates path and starts writing to it with start (a CPU
// profile, an execution trace); the returned stop ends it with end and
// closes the file.
func startFile(path string, start func(io.Writer) error, end func()) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { end(); f.Close() }, nil
}

// commit names the code measured: the VCS revision stamped in the binary,
// else git's view of the working directory, else "unknown".
func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (with uncommitted changes)"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += " (with uncommitted changes)"
	}
	return rev
}

// flagSet reports whether the command line set the flag called name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func targetNames() string {
	var names []string
	for _, t := range bench.Targets {
		names = append(names, t.Name)
	}
	return strings.Join(names, ",")
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ints parses a comma-separated list of numbers.
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("--instances: %q is not a number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--instances must name at least one number")
	}
	return out, nil
}

func check(cfg bench.Config, extra int) error {
	var errs []error
	if extra > 0 {
		errs = append(errs, errors.New("unexpected arguments after the flags"))
	}
	if cfg.Duration <= 0 {
		errs = append(errs, errors.New("--duration must be positive"))
	}
	if cfg.Rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if cfg.Runs < 1 || cfg.Runs > 100 {
		errs = append(errs, errors.New("--runs must be between 1 and 100"))
	}
	if cfg.Workers < 1 || cfg.Workers > 10_000 {
		errs = append(errs, errors.New("--workers must be between 1 and 10000"))
	}
	if cfg.Sessions < 2 {
		errs = append(errs, errors.New("--sessions must be at least 2"))
	}
	if cfg.ValueSize < 1 || cfg.ValueSize > 1<<20 {
		errs = append(errs, errors.New("--size must be between 1 and 1048576"))
	}
	if len(cfg.Workloads) == 0 || len(cfg.Targets) == 0 {
		errs = append(errs, errors.New("--workloads and --targets must name at least one"))
	}
	for _, w := range cfg.Workloads {
		if _, ok := bench.Workloads[w]; !ok {
			errs = append(errs, fmt.Errorf("unknown workload %q (want W1..W6)", w))
		}
	}
	for i, n := range cfg.Instances {
		if n < 0 || n > 1000 || slices.Contains(cfg.Instances[:i], n) {
			errs = append(errs, errors.New("--instances must be different numbers between 0 and 1000"))
			break
		}
	}
	known := split(targetNames())
	for _, t := range cfg.Targets {
		if !slices.Contains(known, t) {
			errs = append(errs, fmt.Errorf("unknown target %q (want some of %s)", t, targetNames()))
		}
	}
	return errors.Join(errs...)
}

// progress shows the suite's progress: a bar per step on a terminal, a
// line per step elsewhere (CI logs).
type progress struct {
	w    io.Writer
	tty  bool
	bar  *progressbar.ProgressBar
	step string
	t0   time.Time
}

func (p *progress) Step(desc string) {
	p.finish()
	p.step, p.t0 = desc, time.Now()
	if p.tty {
		p.bar = progressbar.NewOptions(100, progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(fmt.Sprintf("%-22s", desc)),
			progressbar.OptionSetWidth(30), progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }))
	}
}

func (p *progress) Tick(frac float64) {
	if p.bar != nil {
		p.bar.Set(int(frac * 100))
	}
}

func (p *progress) finish() {
	switch {
	case p.bar != nil:
		p.bar.Finish()
		p.bar = nil
	case p.step != "":
		fmt.Fprintf(p.w, "%-22s done in %s\n", p.step, time.Since(p.t0).Round(10*time.Millisecond))
	}
	p.step = ""
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
