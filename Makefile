# Every target is a thin call of scripts/dev (see the top of that file for the knobs).
# Extra go test arguments: make test ARGS='-run TestX ./internal/...'
.PHONY: demo test services build ci chaos bench bench-quick

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

# The chaos scenario at full size (10,000 symbols and an ETL pull of 20,000 records, 3 workers);
# make chaos ARGS='--symbols 2000 --records 5000 --faults 1m'
chaos:
	scripts/dev chaos $(ARGS)

# The benchmark (issue 6): full size within 10 minutes on 2 cores, quick within 2;
# the full run writes BENCHMARKS.md and docs/bench.png, the quick one prints only
# (make bench-quick ARGS='--out quick.md'). make bench ARGS='--records 100000'
bench:
	scripts/dev bench $(ARGS)

bench-quick:
	scripts/dev bench --quick $(ARGS)
