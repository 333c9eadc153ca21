"""End-to-end helpers: a fake GitHub (a real HTTP server on loopback) and git over smart HTTP."""
