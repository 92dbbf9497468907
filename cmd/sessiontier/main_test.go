package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadFlagsExitTwoWithAMessage(t *testing.T) {
	for _, args := range [][]string{
		{"--workers", "0"},
		{"--duration", "-1s"},
		{"--workloads", "W9"},
		{"--targets", "memcached"},
		{"--size", "0"},
		{"--instances", "x"},
		{"--instances", "0,1,1"},
		{"--instances", "-1"},
		{"--nope"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		if code := runBench(context.Background(), args, &stderr); code != 2 {
			t.Errorf("bench %v exited %d; want 2", args, code)
		}
		if !strings.Contains(stderr.String(), "usage: sessiontier bench") {
			t.Errorf("bench %v printed no usage: %q", args, stderr.String())
		}
	}
}

// TestQuickRun runs the suite's smoke mode on one workload and target and
// checks that the report is written. The full --quick run is in .ci/run.
func TestQuickRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report")
	var stderr bytes.Buffer
	code := runBench(context.Background(), []string{"--quick", "--workloads", "W1", "--targets", "sessiontier,go-redis", "--out", out}, &stderr)
	if code != 0 {
		t.Fatalf("bench --quick exited %d: %s", code, stderr.String())
	}
	report, err := os.ReadFile(filepath.Join(out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## W1", "| sessiontier |", "| go-redis |", "throughput-W1.png"} {
		if !bytes.Contains(report, []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "throughput-W1.png")); err != nil {
		t.Error(err)
	}
}
