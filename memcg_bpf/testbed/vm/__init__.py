"""Boot the test kernel in QEMU and run one command inside it."""
