package lru_test

import (
	"fmt"
	"time"

	"github.com/sessiontier/sessiontier/lru"
)

func ExampleCache() {
	c, err := lru.New(lru.Limits{MaxEntries: 2}, nil)
	if err != nil {
		panic(err)
	}
	c.Set("a", []byte("alpha"), time.Minute, time.Hour)
	c.Set("b", []byte("beta"), time.Minute, time.Hour)
	c.Get("a") // a is in use: it moves to the protected segment
	_, evicted := c.Set("c", []byte("gamma"), time.Minute, time.Hour)

	_, _, aOK := c.Get("a")
	_, _, bOK := c.Get("b")
	fmt.Println("evicted:", evicted, "a kept:", aOK, "b kept:", bOK)
	// Output: evicted: 1 a kept: true b kept: false
}
