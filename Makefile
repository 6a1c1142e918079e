# Developer conveniences; everything is done by ./setup.sh (which needs no make).
# Extra arguments: make run ARGS="--lookups 50"   make test ARGS="-k routing"

ARGS ?=

.PHONY: run test

run:
	./setup.sh run $(ARGS)

test:
	./setup.sh test $(ARGS)
