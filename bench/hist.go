package bench

import (
	"math"
	"time"
)

// hist is a latency histogram with logarithmic buckets 5% wide, from 1 ns
// to about 10 minutes. It is not safe for concurrent use: each worker has
// its own and they are merged.
type hist struct {
	counts [600]int64
	n      int64
}

const histBase = 1.05

func bucketOf(d time.Duration) int {
	if d < 1 {
		return 0
	}
	return min(int(math.Log(float64(d))/math.Log(histBase)), len(hist{}.counts)-1)
}

func (h *hist) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the upper edge of the bucket holding quantile q.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(math.Pow(histBase, float64(i+1)))
		}
	}
	return time.Duration(math.Pow(histBase, float64(len(h.counts))))
}
