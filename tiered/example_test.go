package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/tiered"
)

// The example runs against an in-process Redis (miniredis) so that it needs
// no server; in production, pass a client of your Redis, for instance from
// redis.NewClient.
func Example() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	client := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer client.Close()

	store, err := tiered.New(client, tiered.Options{Prefix: "session:"})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	ctx := context.Background()
	if err := store.Set(ctx, "f3a9c0", []byte(`{"user":42}`), 30*time.Minute); err != nil {
		panic(err)
	}
	data, _ := store.Get(ctx, "f3a9c0") // answered by the local tier
	fmt.Printf("%s\n", data)

	raw, _ := client.Get(ctx, "session:f3a9c0").Result() // the bytes as they are in Redis
	fmt.Println(raw)

	store.Delete(ctx, "f3a9c0")
	_, err = store.Get(ctx, "f3a9c0")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))

	err = store.Set(ctx, "has space", nil, time.Minute)
	fmt.Println(err)
	// Output:
	// {"user":42}
	// {"user":42}
	// true
	// tiered: invalid session id: whitespace, a control character or invalid UTF-8
}
