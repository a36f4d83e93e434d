"""What watchlists announces. Detection listens; watchlists never imports detection.

batch_stored(organization_id, spans): once per committed transaction that stored points, after
commit, with every series it stored as {series_id: (start_us, end_us)} (the batch's first and
last times of the series, µs UTC).

history_imported(organization_id, series_id, start_us, end_us): after a CSV import (a file or a
CSV body) stored points: their span may lie before where live detection stands, so detection runs
the series' rules over it.
"""

from django.dispatch import Signal

batch_stored = Signal()
history_imported = Signal()
