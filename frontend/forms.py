from django import forms

from accounts.models import ApiKeyScope, Role
from alerts.models import Target
from detection.models import Severity
from watchlists.models import SeriesKind

from . import replays


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=120, label="Organization name")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Key name")
    scope = forms.ChoiceField(choices=ApiKeyScope.choices, label="Scope")


class WatchlistForm(forms.Form):
    name = forms.CharField(max_length=120, label="Watchlist name")
    description = forms.CharField(required=False, label="Description", widget=forms.Textarea(attrs={"rows": 2}))
    symbols = forms.CharField(
        required=False, label="Symbols", help_text="Separated by spaces or commas, e.g. SPY AAPL. "
        "Symbols you do not have yet are created as new series; leaving one out removes it from the list.")
    kind = forms.ChoiceField(choices=SeriesKind.choices, initial=SeriesKind.TRADE, label="Kind of new series")
    exchange = forms.CharField(max_length=16, required=False, initial="XNYS", label="Exchange of new series",
                               help_text="An exchange calendar code (XNYS, XNAS, XLON); blank for non-market metrics.")

    def clean_symbols(self):
        raw = self.cleaned_data["symbols"].replace(",", " ").split()
        return list(dict.fromkeys(s.strip().upper() for s in raw if s.strip()))


class ReplayForm(forms.Form):
    file = forms.ChoiceField(label="Demo data")
    speed = forms.TypedChoiceField(choices=[(s, f"{s}x real time") for s in replays.SPEEDS], coerce=int,
                                   initial=60, label="Speed")

    def __init__(self, *args, series, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].choices = [(f.key, f.label) for f in replays.files_for(series)]


class RuleForm(forms.Form):
    name = forms.CharField(max_length=120, label="Rule name")
    metrics = forms.CharField(label="Metrics", widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                              help_text="Boolean expressions separated by ';', e.g. "
                                        "abs(price - prev(price)) > 0.1; size > 100000")
    target = forms.ChoiceField(label="Watches")
    window_size = forms.IntegerField(required=False, min_value=1, label="Window (ms)",
                                     help_text="Optional: evaluate aggregates over windows of this length.")
    step = forms.IntegerField(required=False, min_value=1, label="Step (ms)")
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.MEDIUM, label="Severity")
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")
    run_on_history = forms.BooleanField(
        required=False, initial=True, label="Also run over the stored history",
        help_text="Finds the anomalies in the data already stored, in the background (progress on the series "
                  "page); a changed rule replaces its earlier finds there, keeping the labelled ones.")

    def __init__(self, *args, series, watchlists, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = ([(f"series:{s.pk}", f"Series {s.symbol}") for s in series]
                                         + [(f"watchlist:{w.pk}", f"Watchlist {w.name}") for w in watchlists])


class SubscriptionForm(forms.Form):
    name = forms.CharField(max_length=120, required=False, label="Name")
    target = forms.ChoiceField(label="Alert me about")
    min_severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.LOW, label="Minimum severity")
    email = forms.BooleanField(required=False, initial=True, label="By email")
    webhook = forms.ChoiceField(required=False, label="By webhook")
    cooldown_seconds = forms.IntegerField(min_value=0, initial=0, label="Cooldown per series (seconds)")
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")

    def __init__(self, *args, choices, webhooks, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [(Target.EVERYTHING, "Every anomaly in the organization"), *choices]
        self.fields["webhook"].choices = [("", "— no webhook —"), *((str(w.pk), w.url) for w in webhooks)]


class WebhookForm(forms.Form):
    url = forms.URLField(max_length=2000, label="URL", assume_scheme="https")
    description = forms.CharField(max_length=200, required=False, label="Description")


class DetectorForm(forms.Form):
    series = forms.ChoiceField(label="Series", help_text="Bar or metric series (for ticks, use a 1-minute bar series).")
    kind = forms.ChoiceField(label="Detector", choices=[
        ("robust_zscore", "Robust z-score (fast, no training data needed beyond a day)"),
        ("isolation_forest", "Isolation Forest (multivariate features)"),
        ("lstm_forecast", "LSTM forecast (learns the series' rhythm; slow to train)"),
        ("ensemble", "Ensemble of the above")])
    threshold = forms.FloatField(min_value=0, max_value=1, initial=0.5, label="Threshold",
                                 help_text="Anomaly when the calibrated score reaches this (0.5 = as calibrated).")
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.MEDIUM, label="Severity")

    def __init__(self, *args, series, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["series"].choices = [(str(s.pk), s.symbol) for s in series]


class RangeForm(forms.Form):
    start = forms.DateTimeField(required=False, label="From", help_text="a date (UTC) or an ISO time with its offset",
                                widget=forms.TextInput(attrs={"placeholder": "2013-10-07"}))
    end = forms.DateTimeField(required=False, label="Until", widget=forms.TextInput(attrs={"placeholder": "2013-10-08"}))


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email to invite")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER, label="Role")
