"""Hostile-traffic checks of a running proxy: channels, hostile inputs, fuzzing, soak."""
