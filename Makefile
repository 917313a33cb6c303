# jobfetch: the quick start is `make demo` and `make test`.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

PREFIX ?= /usr/local
DESTDIR ?=
RELEASE_BIN = .build/release

.PHONY: deps build test simulate mutants fuzz demo bench install clean

deps:
	@scripts/install-deps.sh

build: deps
	swift build

test: deps
	swift build --build-tests
	swift test
	scripts/install-check.sh

# The deterministic simulator (README "Architecture"): SEEDS seeds from
# FIRST, or the one SEED a failure printed; SIM_TRACE=1 prints every step.
SEEDS ?= 2000
FIRST ?= 1
simulate: deps
	swift build --build-tests
	SIM_SEEDS=$(SEEDS) SIM_FIRST=$(FIRST) $(if $(SEED),SIM_SEED=$(SEED)) swift test --skip-build --filter SimulatorTests.seededRuns

# Puts back past bugs one at a time (scripts/mutants/*.patch) and shows
# the simulator finds each within the CI budget of seeds.
mutants: deps
	scripts/simulate-mutants.sh

# libFuzzer targets for every parser of untrusted bytes (Fuzz/README.md):
# FUZZ_SECONDS per target, then the regression inputs in Fuzz/Regressions.
FUZZ_SECONDS ?= 60
fuzz: deps
	Fuzz/run.sh $(FUZZ_SECONDS)

# Release binaries with the Swift runtime linked in (they run without the
# toolchain), the unit with its sysusers/tmpfiles files, and the sample config.
install: deps
	swift build -c release --static-swift-stdlib
	install -D -m 0755 $(RELEASE_BIN)/jobfetchd $(DESTDIR)$(PREFIX)/bin/jobfetchd
	install -D -m 0755 $(RELEASE_BIN)/jobfetchctl $(DESTDIR)$(PREFIX)/bin/jobfetchctl
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/bin/jobfetchd|$(PREFIX)/bin/jobfetchd|g' systemd/jobfetchd.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/jobfetchd.service
	install -D -m 0644 systemd/jobfetchd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/jobfetchd.conf
	install -D -m 0644 systemd/jobfetchd.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/jobfetchd.conf
	install -D -m 0644 daemon.conf $(DESTDIR)$(PREFIX)/share/doc/jobfetch/daemon.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/jobfetch/README.md
	@# Man pages and shell completions, from the programs' own argument parsers.
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8
	python3 scripts/manpage.py $(RELEASE_BIN)/jobfetchctl 1 $(DESTDIR)$(PREFIX)/share/man/man1/jobfetchctl.1
	python3 scripts/manpage.py $(RELEASE_BIN)/jobfetchd 8 $(DESTDIR)$(PREFIX)/share/man/man8/jobfetchd.8
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	for p in jobfetchctl jobfetchd; do \
		$(RELEASE_BIN)/$$p --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p && \
		$(RELEASE_BIN)/$$p --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_$$p && \
		$(RELEASE_BIN)/$$p --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$p.fish || exit 1; \
	done
	@if [ ! -e $(DESTDIR)/etc/jobfetchd/daemon.conf ]; then \
		install -D -m 0640 daemon.conf $(DESTDIR)/etc/jobfetchd/daemon.conf; \
		echo "installed a sample /etc/jobfetchd/daemon.conf: edit it, then systemctl enable --now jobfetchd"; \
	fi

demo: build
	scripts/demo.sh

bench:
	scripts/bench.sh

clean:
	rm -rf .build demo bench
