"""The policy runtime a sysadmin uses: find tools, compile, load, store, list, stats."""
