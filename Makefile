# sluice: the two commands the README opens with.
#   make run     install what is missing, build, replicate a demo database
#   make check   install what is missing, build, run the whole test suite
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run check check-asan check-tsan fuzz install bench clean format

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/demo.sh $(BUILD)/sluice

check:
	@scripts/check.sh

check-asan:
	@SANITIZE_ONLY=1 scripts/check.sh

check-tsan:
	@scripts/check-tsan.sh

# libFuzzer targets (tests/fuzz), FUZZ_SECONDS each (default 30).
fuzz:
	@scripts/install-deps.sh --test
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-30} scripts/fuzz.sh

install: build
	cmake --install $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*/*.c tests/unit/*.h

clean:
	rm -rf $(BUILD) build-asan build-fuzz
