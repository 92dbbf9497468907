package bench

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeQuotesOnlyTheReport: every benchmark figure the README quotes
// (a ratio, a share, a duration, a count in the paragraphs that cite
// bench/RESULTS.md) is in the committed report, and they cite its commit.
func TestReadmeQuotesOnlyTheReport(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile("RESULTS.md")
	if err != nil {
		t.Fatal(err)
	}
	commit := regexp.MustCompile(`(?m)^- commit: ([0-9a-f]{7})`).FindSubmatch(report)
	if commit == nil {
		t.Fatal("RESULTS.md names no commit")
	}
	figure := regexp.MustCompile(`\b\d[\d.]*(?:x|%|ms|µs|s)\b|\b\d{4,}\b`)
	cites := regexp.MustCompile(`commit [0-9a-f]{7}`)
	cited := 0
	var paras []string // paragraphs, and each bullet of a list on its own
	for _, para := range strings.Split(string(readme), "\n\n") {
		paras = append(paras, strings.Split(para, "\n- ")...)
	}
	for _, para := range paras {
		flat := strings.Join(strings.Fields(para), " ")
		if !strings.Contains(flat, "bench/RESULTS.md") || !cites.MatchString(flat) {
			continue
		}
		cited++
		if !strings.Contains(flat, "commit "+string(commit[1])) {
			t.Errorf("a README paragraph cites the report with another commit than %s: %.80q", commit[1], flat)
		}
		for _, f := range figure.FindAllString(flat, -1) {
			if !strings.Contains(string(report), f) {
				t.Errorf("the README quotes %s, which bench/RESULTS.md does not hold", f)
			}
		}
	}
	if cited == 0 {
		t.Fatal("no README paragraph cites bench/RESULTS.md with its commit")
	}
}
