# jobfetch: the quick start is `make demo` and `make test`.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: deps build test demo bench clean

deps:
	@scripts/install-deps.sh

build: deps
	swift build

test: deps
	swift build --build-tests
	swift test

demo: build
	scripts/demo.sh

bench:
	scripts/bench.sh

clean:
	rm -rf .build demo bench
