package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Summary writes to w, for W1..W3, each target's median throughput, its
// median ratios to go-redis and to rueidis (each ratio taken within a run)
// its median p99, allocations per operation and Redis's busy share of a
// core, then, for W6, each mode's median writes/s at each
// number of instances and its ratio to none: the tables the command prints
// at the end of a run.
func (r *Report) Summary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Results) > 0 {
		fmt.Fprintln(tw, "workload\ttarget\tops/s\tvs go-redis\tvs rueidis\tp99\tallocs/op\tRedis CPU\t")
	}
	for _, wl := range []string{"W1", "W2", "W3"} {
		names, byTarget := r.byTarget(wl)
		for _, name := range names {
			xs := byTarget[name]
			ops, p99, allocs := make([]float64, len(xs)), make([]float64, len(xs)), make([]float64, len(xs))
			var busy []float64
			for i, x := range xs {
				ops[i], p99[i] = x.Throughput(), float64(x.P99)
				allocs[i] = max(0, x.AllocsPerOp-r.Harness[wl].AllocsPerOp)
				if x.RedisCPU >= 0 {
					busy = append(busy, x.RedisCPU)
				}
			}
			cpu := "—"
			if len(busy) > 0 {
				cpu = fmt.Sprintf("%.2f", median(busy))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%.1f\t%s\t\n", wl, name, median(ops),
				r.ratio(xs, byTarget["go-redis"], medianOf), r.ratio(xs, byTarget["rueidis"], medianOf), round(time.Duration(median(p99))), median(allocs), cpu)
		}
	}
	if err := tw.Flush(); err != nil || len(r.Fanouts) == 0 {
		return err
	}
	by, counts := r.fanoutPoints()
	if len(r.Results) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(tw, "W6 mode\tinstances\twrites/s\tvs 0 instances\tinvalidations/write\t")
	for _, m := range fanoutModes {
		for _, n := range counts {
			xs := by[m.Name][n]
			if len(xs) == 0 {
				continue
			}
			ops, inv := make([]float64, len(xs)), make([]float64, len(xs))
			for i, x := range xs {
				ops[i], inv[i] = x.Throughput(), float64(x.Invalidations)/float64(max(x.Writes, 1))
			}
			vs := "—"
			if ratios := runRatios(xs, by[m.Name][0]); len(ratios) > 0 {
				vs = fmt.Sprintf("%.2fx", median(ratios))
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.3f\t\n", m.Name, n, median(ops), vs, median(inv))
		}
	}
	return tw.Flush()
}

// byTarget returns the results of workload wl by target, and the targets
// in the order they first appear.
func (r *Report) byTarget(wl string) ([]string, map[string][]Result) {
	by := map[string][]Result{}
	var names []string
	for _, x := range r.Results {
		if x.Workload != wl {
			continue
		}
		if _, ok := by[x.Target]; !ok {
			names = append(names, x.Target)
		}
		by[x.Target] = append(by[x.Target], x)
	}
	return names, by
}

// ratio formats, with show (spread, or medianOf), xs's throughput divided
// by base's, run by run; "—" without a base, or in open loop, where the
// rate sets throughput.
func (r *Report) ratio(xs, base []Result, show func([]float64, func(float64) string) string) string {
	if r.Config.Rate > 0 {
		return "—"
	}
	ratios := runRatios(xs, base)
	if len(ratios) == 0 {
		return "—"
	}
	return show(ratios, func(v float64) string { return fmt.Sprintf("%.2fx", v) })
}

// medianOf formats the median of vs.
func medianOf(vs []float64, f func(float64) string) string { return f(median(vs)) }
