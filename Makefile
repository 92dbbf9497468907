# sessiontier: `make test` runs every test against real redis-server
# processes (installed here if missing), `make lint` checks the code.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all deps test lint bench

all: lint test

# deps installs redis-server where it is missing: with apt-get as root on
# Debian/Ubuntu (without starting the system service), otherwise it says
# what to run and fails. Tests start their own servers on free ports.
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server with apt-get"; \
	    own_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	    status=$$?; [ -z "$$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit $$status; \
	  else \
	    echo "redis-server is not installed. Install it, then run make again:"; \
	    echo "  sudo apt-get install redis-server    # Debian/Ubuntu"; \
	    echo "  brew install redis                   # macOS"; \
	    exit 1; \
	  fi; }
	@redis-server --version

test: deps
	$(GO) test -race -count=1 ./...

lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt -w needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# bench runs the Go benchmarks; compare figures within one run.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./...
