"""What watchlists announces. Detection listens; watchlists never imports detection.

points_stored(organization_id, series_id, start_us, end_us, rows): sent after the transaction
that stored a batch commits; start/end are the batch's first and last times (µs UTC).

batch_stored(organization_id, spans): once per committed transaction, with every series it
stored as {series_id: (start_us, end_us)}: listeners that talk to a queue do it once per batch.
"""

from django.dispatch import Signal

points_stored = Signal()
batch_stored = Signal()
