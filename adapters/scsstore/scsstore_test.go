package scsstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/adapters/scsstore"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
	"go.uber.org/goleak"
)

// scs.New starts a memstore, with a cleanup goroutine that nothing stops,
// before a test can replace it with this store.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup"))
}

var bg = context.Background()

func newStore(t *testing.T, srv *redistest.Server, prefix string) *scsstore.Store {
	t.Helper()
	ts, err := tiered.New(srv.Client(), tiered.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return scsstore.New(ts)
}

// TestSessionManager drives a real scs.SessionManager over HTTP with a
// cookie jar: put, get, renew the token, destroy.
func TestSessionManager(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	sm := scs.New()
	sm.Store = newStore(t, srv, "scs:session:")
	sm.Lifetime = time.Hour

	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "message", r.URL.Query().Get("m"))
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sm.GetString(r.Context(), "message"))
	})
	mux.HandleFunc("/renew", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	hs := httptest.NewServer(sm.LoadAndSave(mux))
	defer hs.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	defer client.CloseIdleConnections()
	get := func(path string) string {
		t.Helper()
		res, err := client.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
		}
		return string(body)
	}
	token := func() string {
		for _, c := range jar.Cookies(mustURL(t, hs.URL)) {
			if c.Name == sm.Cookie.Name {
				return c.Value
			}
		}
		return ""
	}

	get("/put?m=hello")
	first := token()
	if first == "" {
		t.Fatal("no session cookie after /put")
	}
	if n := plain.Exists(bg, "scs:session:"+first).Val(); n != 1 {
		t.Fatal("the session is not in Redis under scs:session:<token>")
	}
	if got := get("/get"); got != "hello" {
		t.Fatalf("/get = %q; want hello", got)
	}
	get("/renew")
	second := token()
	if second == "" || second == first {
		t.Fatalf("token after renew = %q; want a new one", second)
	}
	if n := plain.Exists(bg, "scs:session:"+first).Val(); n != 0 {
		t.Fatal("the old token's session survived RenewToken")
	}
	if got := get("/get"); got != "hello" {
		t.Fatalf("/get after renew = %q; want hello", got)
	}
	get("/destroy")
	if n := plain.Exists(bg, "scs:session:"+second).Val(); n != 0 {
		t.Fatal("the session survived Destroy")
	}
	if got := get("/get"); got != "" {
		t.Fatalf("/get after destroy = %q; want empty", got)
	}
}

// TestDropInForGoredisstore: sessions written by scs's goredisstore are
// read through this store, and the other way round.
func TestDropInForGoredisstore(t *testing.T) {
	srv := redistest.Start(t)
	theirs := goredisstore.New(srv.Client())
	ours := newStore(t, srv, "scs:session:")
	payload := []byte("\x00\x01 encoded by scs \xff")
	if err := theirs.CommitCtx(bg, "tok1", payload, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, found, err := ours.FindCtx(bg, "tok1")
	if err != nil || !found || !bytes.Equal(b, payload) {
		t.Fatalf("ours.Find(goredisstore's session) = %q, %v, %v", b, found, err)
	}
	if err := ours.Commit("tok2", payload, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, found, err = theirs.FindCtx(bg, "tok2")
	if err != nil || !found || !bytes.Equal(b, payload) {
		t.Fatalf("goredisstore.Find(our session) = %q, %v, %v", b, found, err)
	}
}

func TestCommitInThePastDeletes(t *testing.T) {
	srv := redistest.Start(t)
	st := newStore(t, srv, "scs:session:")
	st.Commit("tok", []byte("x"), time.Now().Add(time.Hour))
	if err := st.Commit("tok", []byte("x"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, found, err := st.Find("tok"); found || err != nil {
		t.Fatalf("Find after a commit in the past = %v, %v; want not found", found, err)
	}
	if n := srv.Client().Exists(bg, "scs:session:tok").Val(); n != 0 {
		t.Fatal("a commit in the past left the key in Redis")
	}
}

func TestFindMissingAndDelete(t *testing.T) {
	srv := redistest.Start(t)
	st := newStore(t, srv, "scs:session:")
	if b, found, err := st.Find("nope"); b != nil || found || err != nil {
		t.Fatalf("Find(missing) = %v, %v, %v; want nil, false, nil", b, found, err)
	}
	st.Commit("tok", []byte("x"), time.Now().Add(time.Hour))
	if err := st.Delete("tok"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := st.Find("tok"); found {
		t.Fatal("Find after Delete found the session")
	}
}

func TestAll(t *testing.T) {
	srv := redistest.Start(t)
	st := newStore(t, srv, "app[1]*:")
	plain := srv.Client()
	plain.Set(bg, "app11:decoy", "matches the prefix as a glob", time.Hour)
	want := map[string]string{"a": "1", "b": "2", "c": "3"}
	for tok, v := range want {
		st.Commit(tok, []byte(v), time.Now().Add(time.Hour))
	}
	all, err := st.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Fatalf("All = %d sessions %v; want %d", len(all), all, len(want))
	}
	for tok, v := range want {
		if string(all[tok]) != v {
			t.Fatalf("All[%s] = %q; want %q", tok, all[tok], v)
		}
	}
}

// TestInvalidTokenIsNoSession: a cookie no session id can match (too
// long, bytes tiered refuses), which anyone can send, gets a fresh
// session, not an HTTP 500, and nothing is read from Redis for it.
func TestInvalidTokenIsNoSession(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	st := newStore(t, srv, "scs:session:")
	long := strings.Repeat("a", 10<<10)
	for _, token := range []string{long, "with space", "ctl\x01", "\xff\xfe", ""} {
		// Were the token read from Redis, this would be found.
		plain.Set(bg, "scs:session:"+token, "planted", time.Hour)
		gets := getCalls(t, plain)
		if b, found, err := st.FindCtx(bg, token); b != nil || found || err != nil {
			t.Errorf("FindCtx(%.20q) = %q, %v, %v; want nil, false, nil", token, b, found, err)
		}
		if n := getCalls(t, plain); n != gets {
			t.Errorf("FindCtx(%.20q) sent GETs to Redis (calls %s, then %s); want none", token, gets, n)
		}
		if err := st.DeleteCtx(bg, token); err != nil {
			t.Errorf("DeleteCtx(%.20q) = %v; want nil: there is nothing to delete", token, err)
		}
		if err := st.CommitCtx(bg, token, []byte("x"), time.Now().Add(time.Hour)); !errors.Is(err, tiered.ErrInvalidID) {
			t.Errorf("CommitCtx(%.20q) = %v; want ErrInvalidID", token, err)
		}
	}

	sm := scs.New()
	sm.Store = st
	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "message", "hello")
	})
	mux.HandleFunc("/destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	hs := httptest.NewServer(sm.LoadAndSave(mux))
	defer hs.Close()
	client := hs.Client()
	defer client.CloseIdleConnections()
	for _, path := range []string{"/put", "/destroy"} {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: sm.Cookie.Name, Value: long})
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET %s with a 10 KiB cookie: %d %s; want 200", path, res.StatusCode, body)
		}
		if path != "/put" {
			continue
		}
		var fresh string
		for _, c := range res.Cookies() {
			if c.Name == sm.Cookie.Name {
				fresh = c.Value
			}
		}
		if fresh == "" || fresh == long || plain.Exists(bg, "scs:session:"+fresh).Val() != 1 {
			t.Fatalf("GET /put with a 10 KiB cookie: new token %.20q; want a fresh session stored in Redis", fresh)
		}
	}
}

var getCallsRE = regexp.MustCompile(`(?m)^cmdstat_get:calls=(\d+)`)

// getCalls returns how many GETs the server has run, as INFO prints it.
func getCalls(t *testing.T, plain *goredis.Client) string {
	t.Helper()
	info, err := plain.Info(bg, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if m := getCallsRE.FindStringSubmatch(info); m != nil {
		return m[1]
	}
	return "0"
}

func mustURL(t *testing.T, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
