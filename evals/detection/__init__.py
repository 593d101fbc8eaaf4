"""Detection-only evaluation: the guard run in-process over probe sets, no generation.

Measures how often the detector flags probes that should be forgotten (recall, per level and
adversarial type) and probes that should not (false-positive rate on neighbour and utility
probes), with one concept forbidden at a time and with all concepts at once.
"""
