# Shortcuts over tools/setup.sh (which needs only bash and Python).
.PHONY: demo test install

demo:
	bash tools/setup.sh demo

test:
	bash tools/setup.sh test

install:
	bash tools/setup.sh install
