"""The pure core: records, trading state, dirty-path diffs and their application.

No Django, no Redis, no I/O: it takes its settings as arguments, so it can be property-tested
and benchmarked on its own.
"""
