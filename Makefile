# sessiontier: `make test` runs every test against real redis-server
# processes and checks the Prometheus rules (installing redis-server and
# promtool if missing), `make lint` checks the code.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
EXAMPLES    := examples/otel

LIBRARY     := ./tiered ./lru ./redis ./breaker ./telemetry ./adapters/...
PEERS       := rueidis|go-redis/cache|miniredis|gonum|progressbar

.PHONY: all deps test rules lint smoke bench

all: lint test

# need COMMAND PACKAGE: install a Debian package where its command is
# missing, with apt-get as root (without starting its system service),
# otherwise say what to run and fail.
define need
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(2) with apt-get"; \
	    own_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	    status=$$?; [ -z "$$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit $$status; \
	  else \
	    echo "$(1) is not installed. Install it, then run make again:"; \
	    echo "  sudo apt-get install $(2)    # Debian/Ubuntu"; \
	    exit 1; \
	  fi; }
endef

# Tests start their own redis-server processes on free loopback ports.
deps:
	$(call need,redis-server,redis-server)
	$(call need,promtool,prometheus)
	@redis-server --version
	@promtool --version 2>&1 | head -1

# The randomized fault test runs on its own, verbose, so that its seed is
# printed whether it passes or fails (SESSIONTIER_FAULT_SEED replays it,
# SESSIONTIER_FAULT_DURATION runs it longer).
test: deps rules
	$(GO) test -race -count=1 -skip '^TestRandomFaults$$' ./...
	$(GO) test -race -count=1 -v -run '^TestRandomFaults$$' ./tests
	@# Every benchmark once, untimed: one that cannot set itself up fails here.
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...
	cd $(EXAMPLES) && $(GO) test -race -count=1 ./...

# rules checks and unit-tests the Prometheus alerting rules of the example.
rules: deps
	cd $(EXAMPLES) && promtool check rules alerts.yml && promtool test rules alerts_test.yml

lint:
	@bash .ci/check-tracked
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt -w needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd $(EXAMPLES) && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	@# The peers measured by bench must stay out of the library's imports.
	@if $(GO) list -deps $(LIBRARY) | grep -E '$(PEERS)'; then echo "a library package imports a benchmark peer"; exit 1; fi

# smoke runs the benchmark command's quick mode end to end.
smoke: deps
	$(GO) run ./cmd/sessiontier bench --quick --out "$$(mktemp -d)/report"

# bench runs the benchmark suite against the peers and writes a report.
bench: deps
	$(GO) run ./cmd/sessiontier bench
