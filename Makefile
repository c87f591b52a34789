# Convenience targets (GNU make).

# ── aarch64 by emulation (python3 scripts/arm64/harness.py --help) ─────────────────────────────
# make test-arm64 [ARTIFACTS=/path/to/export] [ARM64_ARGS="--cpu pi4"]
# Builds/reuses a Debian arm64 root outside the repo (ARM64_ROOT, default /var/tmp/interformer-arm64-root),
# installs the lean package from PyPI wheels inside it and runs the smoke test, the torch-free tests
# and a short EMULATED benchmark (of ARTIFACTS, default the bundled model exported on the host). Needs root.
.PHONY: test-arm64 test-arm64-clean
test-arm64:
	python3 scripts/arm64/harness.py $(if $(ARTIFACTS),--artifacts "$(ARTIFACTS)") $(ARM64_ARGS)

test-arm64-clean:
	python3 scripts/arm64/harness.py --clean
