package bench

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// TestRedisURLTheTargetsCannotUseIsRefused: the targets reach --redis
// through a plain proxy with its address alone, so a URL naming a
// database (or credentials) is refused before anything is written,
// rather than filling one database while the targets use another.
func TestRedisURLTheTargetsCannotUseIsRefused(t *testing.T) {
	rs := redistest.Start(t)
	for _, url := range []string{"redis://" + rs.Addr + "/3", "redis://:secret@" + rs.Addr} {
		if s, err := StartServer(url); err == nil {
			s.Close()
			t.Errorf("StartServer(%s) accepted a URL the targets cannot follow", url)
		}
	}
	db := goredis.NewClient(&goredis.Options{Addr: rs.Addr, DB: 3})
	defer db.Close()
	if n, err := db.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("database 3 holds %d keys (%v); a refused URL must write nothing", n, err)
	}
}
