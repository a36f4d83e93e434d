"""What watchlists announces. Detection listens; watchlists never imports detection.

points_stored(organization_id, series_id, start_us, end_us, rows): sent after the transaction
that stored a batch commits; start/end are the batch's first and last times (µs UTC).

batch_stored(organization_id, spans): once per committed transaction, with every series it
stored as {series_id: (start_us, end_us)}: listeners that talk to a queue do it once per batch.

history_imported(organization_id, series_id, start_us, end_us): after a CSV import (a file or a
CSV body) stored points: their span may lie before where live detection stands, so detection runs
the series' rules over it.
"""

from django.dispatch import Signal

points_stored = Signal()
batch_stored = Signal()
history_imported = Signal()
