"""Pure tier rules: no I/O, no clock, no settings. Everything here is deterministic."""
