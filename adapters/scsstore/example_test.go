package scsstore_test

import (
	"github.com/alexedwards/scs/v2"
	"github.com/sessiontier/sessiontier/adapters/scsstore"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/tiered"
)

// newSessionManager is the README's example: scs backed by a tiered.Store
// with scs's own key layout. (Compiled, not run: it needs your Redis.)
func newSessionManager() (*scs.SessionManager, func(), error) {
	client, err := redis.NewClient("redis://localhost/0") // context deadlines on, short timeouts
	if err != nil {
		return nil, nil, err
	}
	store, err := tiered.New(client, tiered.Options{Prefix: "scs:session:"}) // scs's own key layout
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	sm := scs.New()
	sm.Store = scsstore.New(store)
	return sm, func() { store.Close(); client.Close() }, nil
}

func ExampleNew() {
	sm, closeStore, err := newSessionManager()
	if err != nil {
		panic(err)
	}
	defer closeStore()
	_ = sm // mux := http.NewServeMux(); http.ListenAndServe(":8080", sm.LoadAndSave(mux))
}
