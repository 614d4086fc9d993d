# Every target is a thin call of scripts/dev (see the top of that file for the knobs).
# Extra go test arguments: make test ARGS='-run TestX ./internal/...'
.PHONY: demo test services build ci

demo:
	scripts/dev demo

test:
	scripts/dev test $(ARGS)

services:
	scripts/dev services

build:
	scripts/dev build

ci:
	scripts/dev test
