"""DRF serializer base classes every app's API uses.

DRF's own classes: a fields-built-once-per-class variant saved only 5-8 % of a request in
tests/benchmarks/bench_rest.py, not enough for what it copied of DRF's internals.
"""

from rest_framework import serializers

Serializer = serializers.Serializer
ModelSerializer = serializers.ModelSerializer
