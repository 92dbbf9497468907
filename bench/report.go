package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Write writes the report to dir: README.md and the PNG plots it shows.
func (r *Report) Write(dir, command string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# sessiontier benchmark report\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n- commit: %s\n- date: %s\n- machine: %s\n- Redis: %s (%s)\n- took: %s\n",
		command, r.Commit, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Machine, r.Server, r.ServerKind, r.Took.Round(time.Second))
	c := r.Config
	fmt.Fprintf(&b, "- runs: every workload %d time(s), interleaved (each run draws its own target order)\n", max(c.Runs, 1))
	if c.Rate > 0 {
		fmt.Fprintf(&b, "- W1..W3 in open loop: %d requests per second in all, each timed from its intended start (a slow answer delays the ones scheduled behind it, and their latencies show it)\n", c.Rate)
	} else {
		b.WriteString("- W1..W3 in closed loop: each worker calls again as soon as it is answered (throughput; latencies then hide the calls a slow answer delayed: use --rate for those)\n")
	}
	fmt.Fprintf(&b, "- budget: %d bytes; 2×sessions: %d entries\n", c.Budget, 2*c.Sessions)
	fmt.Fprintf(&b, "- %d sessions of %d bytes, %d workers, %s per workload and target\n", c.Sessions, c.ValueSize, c.Workers, c.Duration)
	fmt.Fprintf(&b, "- every key under `%s`; before each workload on each target, Redis is reset to the %d sessions alone (FLUSHALL on a server the suite started, the keys under the prefix on yours) and the target order is drawn anew for each workload and run (seed %d; the first run's orders):", Prefix, c.Sessions, c.Seed)
	for _, w := range c.Workloads {
		if order := r.Orders[w]; len(order) > 0 {
			fmt.Fprintf(&b, " %s %s;", w, strings.Join(order, ", "))
		}
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "Budgets: every local cache can hold every session. Where a library bounds bytes it gets %d MiB (sessiontier's local tier, go-redis's client-side cache; rueidis bounds each connection's cache, so its total can be larger); where it bounds only entries it gets %d (go-redis/cache, golang-lru). The settings of each target are listed below.", c.Budget>>20, 2*c.Sessions)
	b.WriteString(" Every target gets the same warm-up: each session read once before timing (the in-process golang-lru gets each written once).")
	b.WriteString(" Columns of W1..W3: round trips/op are writes to the target's connections per operation, counted on the client (a pipeline is one; a client that pipelines many callers' requests shares one between them); Redis cmds/op are commands Redis processed per operation (INFO commandstats); Redis CPU is the share of a core Redis was busy during the run, and its CPU time per operation (INFO cpu, user and system): near 1.0 the single-threaded server, not the client, bounds the throughput; allocs/op are net of the harness's own, measured on a target that does nothing; live heap is what HeapAlloc grew by from a GC before the run to a GC at its end, the target still open (the target's data, mostly); peak heap is HeapInuse sampled every 50 ms, which also follows the allocation rate.")
	b.WriteString(" Latencies are measured around each call by the calling worker, so with many workers per core they include waiting for a core.\n\n")
	if r.ServerKind == "miniredis" {
		b.WriteString("**No redis-server was found: these figures are against miniredis, an in-process Redis. Compare them with each other, not with a real Redis.**\n\n")
	}
	b.WriteString("## Targets\n\n")
	for _, t := range Targets {
		fmt.Fprintf(&b, "- **%s**: %s. Settings: %s.\n", t.Name, t.Note, t.Settings)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "- skipped: %s\n", s)
	}
	for _, w := range []string{"W1", "W2", "W3"} {
		if err := r.writeWorkload(&b, dir, w); err != nil {
			return err
		}
	}
	if err := r.writeOutage(&b, dir); err != nil {
		return err
	}
	r.writeRevocation(&b)
	if err := r.writeFanout(&b, dir); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(b.String()), 0o644)
}

func (r *Report) writeWorkload(b *strings.Builder, dir, w string) error {
	names, byTarget := r.byTarget(w)
	if len(names) == 0 {
		return nil
	}
	runs := len(byTarget[names[0]])
	fmt.Fprintf(b, "\n## %s — %s\n\n", w, Workloads[w])
	if runs > 1 {
		fmt.Fprintf(b, "Medians of %d interleaved runs, the range in brackets; a ratio is taken within each run.\n\n", runs)
	}
	h := r.Harness[w]
	fmt.Fprintf(b, "Allocs/op net of the harness's own %.1f. The harness alone, on a target that does nothing, measures p50 %s and p99 %s: the floor of these latencies.\n\n", h.AllocsPerOp, round(h.P50), round(h.P99))
	b.WriteString("| target | ops/s | vs go-redis | vs rueidis | p50 | p99 | p999 | round trips/op | Redis cmds/op | Redis CPU | allocs/op | live heap | peak heap | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	values := plotter.Values{}
	for _, name := range names {
		xs := byTarget[name]
		ops := make([]float64, len(xs))
		var p50, p99, p999, cmds, trips, busy, perOp, allocs, live, heap []float64
		var errs int64
		for i, x := range xs {
			ops[i] = x.Throughput()
			p50, p99, p999 = append(p50, float64(x.P50)), append(p99, float64(x.P99)), append(p999, float64(x.P999))
			if x.CmdsPerOp >= 0 {
				cmds = append(cmds, x.CmdsPerOp)
			}
			if x.RoundTripsPerOp >= 0 {
				trips = append(trips, x.RoundTripsPerOp)
			}
			if x.RedisCPU >= 0 {
				busy, perOp = append(busy, x.RedisCPU), append(perOp, x.RedisCPUPerOp)
			}
			allocs = append(allocs, max(0, x.AllocsPerOp-r.Harness[w].AllocsPerOp))
			live, heap = append(live, float64(x.LiveHeap>>20)), append(heap, float64(x.PeakHeap>>20))
			errs += x.Errors
		}
		cmd, trip, cpu := "—", "—", "—"
		if len(cmds) > 0 {
			cmd = fmt.Sprintf("%.3f", median(cmds))
		}
		if len(trips) > 0 {
			trip = fmt.Sprintf("%.3f", median(trips))
		}
		if len(busy) > 0 {
			cpu = fmt.Sprintf("%.2f, %s/op", median(busy), round(time.Duration(median(perOp)*float64(time.Second))))
		}
		dur := func(v float64) string { return round(time.Duration(v)) }
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.0f MiB | %.0f MiB | %d |\n", name,
			spread(ops, func(v float64) string { return fmt.Sprintf("%.0f", v) }),
			r.ratio(xs, byTarget["go-redis"], spread), r.ratio(xs, byTarget["rueidis"], spread),
			dur(median(p50)), spread(p99, dur), dur(median(p999)), trip, cmd, cpu, median(allocs), median(live), median(heap), errs)
		values = append(values, median(ops))
	}
	png := "throughput-" + w + ".png"
	fmt.Fprintf(b, "\n![%s throughput](%s)\n", w, png)
	return barChart(filepath.Join(dir, png), w+": throughput (ops/s, median)", names, values)
}

// median returns the median of vs (the mean of the middle two for an even
// count).
func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread formats the median of vs and, for more than one, their range.
func spread(vs []float64, f func(float64) string) string {
	if len(vs) == 1 {
		return f(vs[0])
	}
	return fmt.Sprintf("%s [%s–%s]", f(median(vs)), f(slices.Min(vs)), f(slices.Max(vs)))
}

func round(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return d.Round(10 * time.Nanosecond).String()
	case d < time.Millisecond:
		return d.Round(100 * time.Nanosecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

func barChart(path, title string, names []string, values plotter.Values) error {
	p := plot.New()
	p.Title.Text = title
	bars, err := plotter.NewBarChart(values, vg.Points(30))
	if err != nil {
		return err
	}
	bars.Color = color.RGBA{R: 60, G: 110, B: 180, A: 255}
	p.Add(bars)
	p.NominalX(names...)
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

func (r *Report) writeOutage(b *strings.Builder, dir string) error {
	if len(r.Timelines) == 0 {
		return nil
	}
	c := r.Config
	fmt.Fprintf(b, "\n## W4 — %s\n\n", Workloads["W4"])
	fmt.Fprintf(b, "W1 traffic (each write a new version of its session, each session written by one worker) for %s, Redis out for %s, back for %s, on every target with a Redis. Per phase: the calls begun, the share that failed, that answered \"no such session\", that answered a version older than one acknowledged before the read began (stale), the writes acknowledged, and of those the ones Redis does not hold at the end, once sessiontier has replayed (lost: a lower bound, as only the last acknowledged version of each session is checked). Phases are counted from the planned cut and restore. Each target runs with the settings listed above.\n", c.OutagePart, c.OutagePart, c.OutagePart)
	kinds := map[string]string{
		OutageKill: map[string]string{"redis-server": "Redis killed with SIGKILL and restarted empty: what it held before is gone for every target, and only what a target kept can come back. sessiontier replays a write only onto the value it replaces; the restart erased those values, so its pending writes (and the writes queued behind them, phases being counted from the planned restore, not from when Redis answered again) are dropped as conflicts, counted and alerted", "miniredis": "miniredis closed and restarted empty", "external": "the targets' connections to your Redis cut by a proxy, then restored (your Redis keeps its data)"}[r.ServerKind],
		OutageHang: "Redis frozen with SIGSTOP, then resumed with its data: connections stay open and nothing answers",
	}
	for _, kind := range []string{OutageKill, OutageHang} {
		var tls, first []Timeline
		for _, t := range r.Timelines {
			if t.Outage == kind {
				tls = append(tls, t)
				if t.Run <= 1 {
					first = append(first, t)
				}
			}
		}
		if len(tls) == 0 {
			continue
		}
		agg := aggregate(tls)
		fmt.Fprintf(b, "\n### W4 %s: %s\n\n", kind, kinds[kind])
		if n := len(tls) / max(len(first), 1); n > 1 {
			fmt.Fprintf(b, "Counts summed over %d runs; slowest call: the slowest of any run; replay: the median of the runs, the range in brackets.\n\n", n)
		}
		b.WriteString("Not found, once recovered: reads begun after Redis returned and, for sessiontier, after its breaker was seen closed again; while it is open, a read of a session it holds no copy of answers not found (see `StrictReads`).\n\n")
		b.WriteString("| target | phase | calls | failed | not found | not found, once recovered | stale | writes acked | acked, then lost |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range agg {
			for ph, name := range []string{"before", "during", "after"} {
				x := t.Phases[ph]
				pct := func(n int64) string {
					if x.Calls == 0 {
						return "—"
					}
					return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(x.Calls))
				}
				recovered := "—"
				if ph == 2 {
					recovered = pct(x.NotFoundRecovered)
				}
				fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s | %d | %d |\n", t.Target, name, x.Calls, pct(x.Errors), pct(x.NotFound), recovered, pct(x.Stale), x.Acked, x.Lost)
			}
		}
		b.WriteString("\n| target | slowest call | outage tier peak / cap | replay done after Redis returned | writes still pending when counted (counted lost too) |\n|---|---:|---:|---:|---:|\n")
		for _, t := range agg {
			peak, replay, pending := "—", "—", "—"
			if isSessiontier(t.Target) {
				pending = fmt.Sprint(t.PendingAtEnd)
				peak = fmt.Sprintf("%.1f / %d MiB", float64(t.MaxFallbackBytes)/(1<<20), t.FallbackByteLimit>>20)
				replay = "not within the run"
				if len(t.replays) > 0 {
					replay = spread(t.replays, func(v float64) string { return time.Duration(v).Round(10 * time.Millisecond).String() })
				}
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", t.Target, round(t.Slowest), peak, replay, pending)
		}
		for _, t := range first {
			if len(t.Alerts) > 0 {
				fmt.Fprintf(b, "\nAlerts raised by %s:\n\n", t.Target)
				for _, a := range t.Alerts {
					fmt.Fprintf(b, "- %s\n", a)
				}
			}
		}
		png := "outage-W4-" + kind + ".png"
		fmt.Fprintf(b, "\n![W4 %s timeline, first run](%s)\n", kind, png)
		if err := timelinePlot(filepath.Join(dir, png), first); err != nil {
			return err
		}
	}
	return nil
}

// aggregated is a target's W4 over every run.
type aggregated struct {
	Timeline
	replays []float64 // ReplayDone of the runs where it was within the run
}

// aggregate sums the runs of each target, in the order they come.
func aggregate(tls []Timeline) []*aggregated {
	var out []*aggregated
	byTarget := map[string]*aggregated{}
	for _, t := range tls {
		a, ok := byTarget[t.Target]
		if !ok {
			a = &aggregated{Timeline: Timeline{Target: t.Target, FallbackByteLimit: t.FallbackByteLimit}}
			byTarget[t.Target] = a
			out = append(out, a)
		}
		for ph := range a.Phases {
			p, q := &a.Phases[ph], t.Phases[ph]
			p.Calls, p.Errors, p.NotFound, p.NotFoundRecovered = p.Calls+q.Calls, p.Errors+q.Errors, p.NotFound+q.NotFound, p.NotFoundRecovered+q.NotFoundRecovered
			p.Stale, p.Acked, p.Lost = p.Stale+q.Stale, p.Acked+q.Acked, p.Lost+q.Lost
		}
		a.Slowest, a.MaxFallbackBytes = max(a.Slowest, t.Slowest), max(a.MaxFallbackBytes, t.MaxFallbackBytes)
		a.PendingAtEnd += t.PendingAtEnd
		if t.ReplayDone >= 0 {
			a.replays = append(a.replays, float64(t.ReplayDone))
		}
	}
	return out
}

func timelinePlot(path string, timelines []Timeline) error {
	panels := []struct {
		title string
		value func(Interval) float64
		store bool
	}{
		{"throughput (ops/s)", func(iv Interval) float64 { return float64(iv.Ops) / interval.Seconds() }, false},
		{"p99 latency (ms)", func(iv Interval) float64 { return float64(iv.P99) / 1e6 }, false},
		{"errors seen by callers (per 100 ms)", func(iv Interval) float64 { return float64(iv.Errors) }, false},
		{"outage tier (MiB)", func(iv Interval) float64 { return float64(iv.FallbackBytes) / (1 << 20) }, true},
		{"pending writes", func(iv Interval) float64 { return float64(iv.PendingWrites) }, true},
		{"breaker open (1) / half-open (0.5)", func(iv Interval) float64 {
			return map[string]float64{"open": 1, "half-open": 0.5}[iv.Breaker]
		}, true},
	}
	colors := []color.Color{color.RGBA{R: 200, G: 60, B: 40, A: 255}, color.RGBA{R: 60, G: 110, B: 180, A: 255},
		color.RGBA{R: 60, G: 160, B: 80, A: 255}, color.RGBA{R: 150, G: 80, B: 170, A: 255}, color.RGBA{R: 230, G: 150, B: 30, A: 255}}
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "seconds"
		for k, t := range timelines {
			if pn.store && !isSessiontier(t.Target) {
				continue
			}
			pts := make(plotter.XYs, len(t.Intervals))
			for j, iv := range t.Intervals {
				pts[j] = plotter.XY{X: iv.At.Seconds(), Y: pn.value(iv)}
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			line.Color = colors[k%len(colors)]
			p.Add(line)
			p.Legend.Add(t.Target, line)
		}
		p.Legend.Top = true
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(900), vg.Points(float64(200*len(panels))))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Points(8), PadTop: vg.Points(4), PadBottom: vg.Points(4)}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r *Report) writeRevocation(b *strings.Builder) {
	if len(r.Revocations) == 0 {
		return
	}
	byTarget, names := map[string][]Revocation{}, []string{}
	for _, v := range r.Revocations {
		if _, ok := byTarget[v.Target]; !ok {
			names = append(names, v.Target)
		}
		byTarget[v.Target] = append(byTarget[v.Target], v)
	}
	runs := len(byTarget[names[0]])
	fmt.Fprintf(b, "\n## W5 — %s\n\nTwo instances of each target on the same Redis, W1 traffic on the first; %d times per run: a session is written on A and read twice on B, deleted on A, and B is polled until it answers not-found.", Workloads["W5"], r.Config.Trials)
	if runs > 1 {
		fmt.Fprintf(b, " Revocations seen are summed over %d runs; latencies are the median of the runs' figures, the range in brackets.", runs)
	}
	b.WriteString("\n\n| target | revocations seen by B | p50 | p99 | max | notes |\n|---|---:|---:|---:|---:|---|\n")
	for _, name := range names {
		vs := byTarget[name]
		var seen, trials int
		var p50, p99, mx []float64
		for _, v := range vs {
			seen, trials = seen+v.Seen, trials+v.Trials
			if v.Seen > 0 {
				p50, p99, mx = append(p50, float64(v.P50)), append(p99, float64(v.P99)), append(mx, float64(v.Max))
			}
		}
		dur := func(v float64) string { return round(time.Duration(v)) }
		c50, c99, cmx := "—", "—", "—"
		if len(p50) > 0 {
			c50, c99, cmx = spread(p50, dur), spread(p99, dur), spread(mx, dur)
		}
		note := ""
		if seen < trials {
			note = fmt.Sprintf("%d of %d still served after %s", trials-seen, trials, vs[0].Timeout)
		}
		if info, err := TargetByName(name); err == nil && !info.Invalidation {
			note += "; no cross-instance invalidation: a local copy lives until its local TTL (" + localTTL.String() + ")"
		}
		fmt.Fprintf(b, "| %s | %d/%d | %s | %s | %s | %s |\n", name, seen, trials, c50, c99, cmx, strings.TrimPrefix(note, "; "))
	}
}

// fanoutPoints returns W6's results by mode and number of instances, and
// the numbers of instances in the order they were measured.
func (r *Report) fanoutPoints() (map[string]map[int][]Fanout, []int) {
	by := map[string]map[int][]Fanout{}
	var counts []int
	for _, f := range r.Fanouts {
		if by[f.Mode] == nil {
			by[f.Mode] = map[int][]Fanout{}
		}
		by[f.Mode][f.Instances] = append(by[f.Mode][f.Instances], f)
		if !slices.Contains(counts, f.Instances) {
			counts = append(counts, f.Instances)
		}
	}
	return by, counts
}

// perRun is a measurement of one run: a Result or a Fanout.
type perRun interface {
	run() int
	Throughput() float64
}

func (r Result) run() int { return r.Run }
func (f Fanout) run() int { return f.Run }

// runRatios returns, run by run, the throughput of xs divided by that of
// base in the same run (runs without a base are left out).
func runRatios[T perRun](xs, base []T) []float64 {
	of := map[int]float64{}
	for _, x := range base {
		of[x.run()] = x.Throughput()
	}
	var ratios []float64
	for _, x := range xs {
		if v := of[x.run()]; v > 0 {
			ratios = append(ratios, x.Throughput()/v)
		}
	}
	return ratios
}

func (r *Report) writeFanout(b *strings.Builder, dir string) error {
	if len(r.Fanouts) == 0 {
		return nil
	}
	by, counts := r.fanoutPoints()
	c := r.Config
	fmt.Fprintf(b, "\n## W6 — %s\n\n", Workloads["W6"])
	fmt.Fprintf(b, "Redis's write capacity with N sessiontier instances attached to it, in each invalidation mode. The writers: %d connections, each keeping a pipeline of %d SET PX in flight (%d-byte values, TTL 1h, to sessions drawn uniformly from the %d); they speak RESP themselves, the lightest of clients, so that Redis rather than the client sets the pace (Redis CPU shows whether it did). ", fanoutWriters, fanoutPipeline, c.ValueSize, c.Sessions)
	fmt.Fprintf(b, "The instances: tiered.Stores with the settings of the sessiontier target, their local tiers bounded to twice their share, in broadcast mode (InvalidationTracking: CLIENT TRACKING ON BCAST PREFIX %s NOLOOP, every change under the prefix pushed to every instance) or in per-key mode (InvalidationPerKey: CLIENT TRACKING ON, a change pushed only to the instances that read the key since its last change). Instance i reads sessions i, i+N, … once before the writes begin, so that in per-key mode Redis tracks each session for one instance; while the writes run, the instances keep reading their shares round robin, %d reads per second in all whatever N: a read of a session a write invalidated goes to Redis and, in per-key mode, has Redis track it again. ", Prefix, fanoutReadRate)
	fmt.Fprintf(b, "The window counted lasts %s and begins once the writes have settled: when the writers have written three SETs per session (95%% of the sessions at least once), or after half the window's length if that comes first. By then each session tracked at the start has been invalidated once, a one-off cost, and Redis tracks those read since, as in a steady state. ", c.Duration)
	b.WriteString("Before each point Redis is reset to the sessions alone, which empties its tracking table too; each mode's series has its own point with no instance, and a ratio is taken to it within the run. The instances run in this process, on the cores of Redis and the writers: what they spend on invalidations is taken from those, as on a shared host. Goal: with 40 instances attached in per-key mode, Redis keeps ≥ 80% of the writes/s it has with none (0.80x).")
	if runs := len(by[r.Fanouts[0].Mode][r.Fanouts[0].Instances]); runs > 1 {
		fmt.Fprintf(b, " Medians of %d interleaved runs, the range in brackets.", runs)
	}
	b.WriteString(" Columns: sessions held, the instances' local entries when the writes began; keys tracked, INFO tracking_total_keys then (broadcast tracks a prefix, not keys); invalidations/write, the invalidated sessions the instances received, summed, per SET acknowledged; Redis CPU and client CPU, the cores Redis and this process (the writers and the instances) used (user and system); the last four, like writes/s, over the window counted.\n\n")
	b.WriteString("| mode | instances | writes/s | vs 0 instances | invalidations/write | sessions held | keys tracked | Redis CPU | client CPU | reads/s by the instances | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p := plot.New()
	p.Title.Text = "W6: Redis writes/s with N instances attached (median)"
	p.X.Label.Text = "instances attached"
	p.Y.Label.Text = "SET/s"
	colors := []color.Color{color.RGBA{R: 200, G: 60, B: 40, A: 255}, color.RGBA{R: 60, G: 110, B: 180, A: 255}}
	for k, m := range fanoutModes {
		var pts plotter.XYs
		for _, n := range counts {
			xs := by[m.Name][n]
			if len(xs) == 0 {
				continue
			}
			var ops, inv, held, tracked, cpu, self, rd []float64
			var errs int64
			for _, x := range xs {
				ops, held, self = append(ops, x.Throughput()), append(held, float64(x.Held)), append(self, x.ClientCPU)
				inv = append(inv, float64(x.Invalidations)/float64(max(x.Writes, 1)))
				rd = append(rd, float64(x.Reads)/x.Elapsed.Seconds())
				if x.Tracked >= 0 {
					tracked = append(tracked, float64(x.Tracked))
				}
				if x.RedisCPU >= 0 {
					cpu = append(cpu, x.RedisCPU)
				}
				errs += x.Errors + x.ReadErrors
			}
			num := func(v float64) string { return fmt.Sprintf("%.0f", v) }
			vs, trk, cores := "—", "—", "—"
			if ratios := runRatios(xs, by[m.Name][0]); len(ratios) > 0 {
				vs = spread(ratios, func(v float64) string { return fmt.Sprintf("%.2fx", v) })
			}
			if len(tracked) > 0 {
				trk = num(median(tracked))
			}
			if len(cpu) > 0 {
				cores = fmt.Sprintf("%.2f", median(cpu))
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %.3f | %s | %s | %s | %.2f | %s | %d |\n", m.Name, n, spread(ops, num), vs,
				median(inv), num(median(held)), trk, cores, median(self), num(median(rd)), errs)
			pts = append(pts, plotter.XY{X: float64(n), Y: median(ops)})
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color, points.Color = colors[k%len(colors)], colors[k%len(colors)]
		p.Add(line, points)
		p.Legend.Add(m.Name, line, points)
	}
	p.Legend.Top = true
	p.Y.Min = 0
	png := "fanout-W6.png"
	fmt.Fprintf(b, "\n![W6 writes/s by instances attached](%s)\n", png)
	return p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, png))
}
