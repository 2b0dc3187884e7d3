"""The developer's test bed: build the patched kernel, boot it in QEMU, benchmark it."""
