.PHONY: check test demo
check:
	bash scripts/check
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
