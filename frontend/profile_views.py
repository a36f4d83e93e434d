"""The signed-in person's own settings: the time zone metric series are shown in."""

from __future__ import annotations

from zoneinfo import available_timezones

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render

from accounts.models import User

from .pages import org_page


class TimeZoneForm(forms.ModelForm):
    time_zone = forms.ChoiceField(label="Time zone for metric series", help_text=(
        "Metric series (no exchange) show their times in this zone on every page. Market series always "
        "show their exchange's time; the API always answers in UTC."))

    class Meta:
        model = User
        fields = ["time_zone"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [("UTC", "UTC"), *((z, z) for z in sorted(available_timezones() - {"UTC"}))]


@org_page
def time_zone(request, actor):
    form = TimeZoneForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Metric series now show {form.cleaned_data['time_zone']} times.")
        return redirect("frontend:time-zone")
    return render(request, "frontend/time_zone.html", {"form": form})
