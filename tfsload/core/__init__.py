"""The shared vocabulary of tfsload's parts; imports none of them.

Errors, atomic files, TF Serving's protobuf messages, targets, thresholds, the percentile list and
the typed description of one load run (written by the orchestrator, read inside Locust).
"""
