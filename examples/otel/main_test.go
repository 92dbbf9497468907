package main

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/tiered"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP receiver on loopback that decodes the protobuf
// requests and keeps what the test checks.
type receiver struct {
	mu      sync.Mutex // guards the fields below
	spans   map[string]bool
	events  map[string]string // log event name -> severity text
	breaker map[string]int64  // sessiontier.breaker.state by state, last value
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch req.URL.Path {
	case "/v1/traces":
		var m coltrace.ExportTraceServiceRequest
		if err = proto.Unmarshal(raw, &m); err == nil {
			for _, rs := range m.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					for _, s := range ss.Spans {
						r.spans[s.Name] = true
					}
				}
			}
		}
		raw, _ = proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	case "/v1/metrics":
		var m colmetrics.ExportMetricsServiceRequest
		if err = proto.Unmarshal(raw, &m); err == nil {
			for _, rm := range m.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, met := range sm.Metrics {
						if met.Name != "sessiontier.breaker.state" {
							continue
						}
						for _, p := range met.GetGauge().GetDataPoints() {
							for _, a := range p.Attributes {
								if a.Key == "state" {
									r.breaker[a.Value.GetStringValue()] = p.GetAsInt()
								}
							}
						}
					}
				}
			}
		}
		raw, _ = proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
	case "/v1/logs":
		var m collogs.ExportLogsServiceRequest
		if err = proto.Unmarshal(raw, &m); err == nil {
			for _, rl := range m.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					for _, l := range sl.LogRecords {
						r.events[l.EventName] = l.SeverityText
					}
				}
			}
		}
		raw, _ = proto.Marshal(&collogs.ExportLogsServiceResponse{})
	default:
		http.NotFound(w, req)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(raw)
}

// TestOTLPEndToEnd: the real OTLP/HTTP exporters deliver an outage's
// breaker_open log record, the breaker-state metric and the spans to a
// receiver; the Prometheus endpoint serves every series alerts.yml uses.
func TestOTLPEndToEnd(t *testing.T) {
	rcv := &receiver{spans: map[string]bool{}, events: map[string]string{}, breaker: map[string]int64{}}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hs.URL)

	ctx := context.Background()
	p, err := newProviders(ctx, promclient.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer p.shutdown(ctx)

	srv := redistest.Start(t)
	client, err := redis.NewClient("redis://" + srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	opts := tiered.Options{Telemetry: p.options(), Breaker: breaker.Settings{Failures: 2, OpenTimeout: time.Hour}}
	store, err := tiered.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Set(ctx, "s1", []byte("data"), time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for store.Stats().Breaker != "open" {
		store.Get(ctx, "missing")
		if time.Now().After(deadline) {
			t.Fatal("the breaker did not open")
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if err := p.flush(ctx); err != nil {
			t.Fatal(err)
		}
		rcv.mu.Lock()
		done := rcv.events["sessiontier.breaker_open"] != "" && rcv.breaker["open"] == 1 && rcv.spans["sessiontier.set"] && rcv.spans["GET"]
		rcv.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			rcv.mu.Lock()
			t.Fatalf("the receiver got events %v, breaker state %v, spans %v; want breaker_open, open=1, sessiontier.set and GET", rcv.events, rcv.breaker, rcv.spans)
		}
		time.Sleep(10 * time.Millisecond) // polling the receiver
	}
	if sev := rcv.events["sessiontier.breaker_open"]; sev != "error" {
		t.Errorf("breaker_open severity = %q; want error", sev)
	}

	// Every series the alerting rules use is served on /metrics.
	ms := httptest.NewServer(p.metricsHandler())
	defer ms.Close()
	res, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(res.Body)
	res.Body.Close()
	rules, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`sessiontier_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) < 4 {
		t.Fatalf("alerts.yml names only %v", names)
	}
	for _, name := range names {
		if !strings.Contains(string(scrape), "\n"+name+"{") && !strings.Contains(string(scrape), "\n"+name+" ") {
			t.Errorf("alerts.yml uses %s, which /metrics does not serve", name)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("/metrics served:\n%s", grepLines(string(scrape), "sessiontier_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
