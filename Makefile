# The README's two commands: `make demo` and `make test`. Both set up a fresh Debian 12 machine.
SHELL := /bin/bash
ARCH := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null)
OUTPUT := .output
BPF_SOURCES := $(wildcard bpf/*.bpf.c)
BPF_OBJECTS := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.bpf.o,$(BPF_SOURCES))
SKELETONS := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.skel.h,$(BPF_SOURCES))
# The TypeScript side's view of the BPF objects (layouts, constants, names), generated from them.
ABI := src/kernel/abi.ts
TS_SOURCES := $(filter-out $(ABI),$(wildcard src/*.ts src/*/*.ts src/*/*.cts)) $(ABI)
SETUP_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool gcc python3.11 python3.11-dev gdb systemtap-sdt-dev util-linux postgresql-15 postgresql-client-15 g++ binutils procps pypy3 python3-flask gunicorn prometheus golang-go
ADDON := build/Release/usdtrace.node
# What node-gyp-build loads in an installed package: N-API, so one file serves every Node from 18 on.
PREBUILD := prebuilds/linux-$(shell node -p process.arch)/usdtrace.glibc.node

.PHONY: setup build test demo bench clean prebuild addon-inputs
.DELETE_ON_ERROR:
.SECONDARY:

# apt-get only when a tool or library is missing, so a set-up machine pays nothing.
setup:
	@missing=$$(for p in $(SETUP_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --ignore-scripts --no-audit --no-fund
	@[ -e $(ARM64_LIBPYTHON) ] || $(MAKE) --no-print-directory $(ARM64_LIBPYTHON)

# Debian's arm64 libpython3.11, whose probe notes the tests read (never run) on any host: the
# version apt offers this machine, from the pool directory its own architecture's comes from.
ARM64_LIBPYTHON := $(OUTPUT)/arm64/usr/lib/aarch64-linux-gnu/libpython3.11.so.1.0
$(ARM64_LIBPYTHON):
	@mkdir -p $(OUTPUT)/arm64
	uri=$$(apt-get download --print-uris libpython3.11 2>/dev/null | grep -o "^'[^']*'" | tr -d "'"); \
	if [ -z "$$uri" ]; then apt-get update -qq && uri=$$(apt-get download --print-uris libpython3.11 | grep -o "^'[^']*'" | tr -d "'"); fi; \
	/usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "$${uri%_*.deb}_arm64.deb" $(OUTPUT)/libpython3.11-arm64.deb
	dpkg-deb -x $(OUTPUT)/libpython3.11-arm64.deb $(OUTPUT)/arm64
	touch $@

build: $(ADDON) dist/index.js dist-cjs/index.js

$(OUTPUT)/vmlinux.h:
	@mkdir -p $(OUTPUT)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c bpf/*.h $(OUTPUT)/vmlinux.h
	clang -g -O2 -Wall -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -I$(OUTPUT) -I/usr/include/$(MULTIARCH) -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o
	bpftool gen skeleton $< name $* > $@

# Debian's libelf.a keeps its error state in local-exec TLS (elf_error.o), which a shared object
# cannot hold; native/static_link_fixes.c replaces that one member.
$(OUTPUT)/libelf-shared.a: /usr/lib/$(MULTIARCH)/libelf.a
	cp $< $@ && ar d $@ elf_error.o

# What node-gyp needs besides the sources; an install without a fitting prebuild makes this first.
addon-inputs: $(SKELETONS) $(OUTPUT)/libelf-shared.a

# prebuildify compiles with node-gyp in build/ and moves the addon to prebuilds/; the local build
# is the same file, so it is copied back rather than compiled twice.
$(ADDON) $(PREBUILD) &: $(SKELETONS) $(OUTPUT)/libelf-shared.a binding.gyp native/*.cc native/*.h native/*.c bpf/*.h
	npx prebuildify --napi --tag-libc
	mkdir -p $(dir $(ADDON)) && cp $(PREBUILD) $(ADDON)

prebuild: $(PREBUILD)

$(ABI): $(BPF_OBJECTS) scripts/generate-abi.js
	node scripts/generate-abi.js $@ $(BPF_OBJECTS)

dist/index.js: $(TS_SOURCES) tsconfig.json
	npx tsc -p tsconfig.json
	chmod +x dist/cli/main.js

# The CommonJS build, for require('usdtrace'): the same sources, one level below the root like dist/.
dist-cjs/index.js: $(TS_SOURCES) tsconfig.json tsconfig.cjs.json
	npx tsc -p tsconfig.cjs.json
	echo '{ "type": "commonjs" }' > dist-cjs/package.json

test: setup
	$(MAKE) build
	npx tap

demo: setup
	$(MAKE) build
	node examples/demo.js

clean:
	rm -rf $(OUTPUT) build dist dist-cjs prebuilds $(ABI)

# The C reference points share the addon's BPF object, its uprobe multi attach, its globals lookup and its ring reader (bench/reference.cc).
$(OUTPUT)/bench-reference: bench/reference.cc native/uprobe_multi.cc native/uprobe_multi.h native/globals.cc native/globals.h native/ring.cc native/ring.h bpf/usdtrace.h $(OUTPUT)/calls.skel.h
	g++ -std=c++17 -O2 -Wall -I$(OUTPUT) -Ibpf -Inative -o $@ $(filter %.cc,$^) -l:libbpf.a -l:libelf.a -l:libz.a

# What bench/run.js compares usdtrace with: bpftrace, and bcc's python tools with kernel headers to
# compile against (Debian 12's 6.1 headers: bcc's python tools compile with them on newer kernels too).
DEB_ARCH = $(shell dpkg --print-architecture)
BENCH_PACKAGES = bpftrace bpfcc-tools linux-headers-$(DEB_ARCH) linux-perf
KERNEL_HEADERS_COMMON := $(lastword $(shell ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V))

# bcc takes kernel headers from the one directory BCC_KERNEL_SOURCE names, and Debian splits them
# into a common and an architecture tree: the newest installed pair, merged here as symlinks.
$(OUTPUT)/bcc-kernel-headers: $(KERNEL_HEADERS_COMMON)
	@[ -n "$<" ] || { echo "no kernel headers in /usr/src: apt-get install linux-headers-$(DEB_ARCH)"; exit 1; }
	rm -rf $@ $@.tmp && mkdir -p $@.tmp
	cp -rs $</. $@.tmp/ && cp -rs --remove-destination $(<:-common=-$(DEB_ARCH))/. $@.tmp/
	mv $@.tmp $@

bench: setup
	@dpkg -s $(BENCH_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_PACKAGES) >/dev/null)
	$(MAKE) build $(OUTPUT)/bench-reference $(OUTPUT)/bcc-kernel-headers
	node bench/run.js
	node bench/sampling.js
