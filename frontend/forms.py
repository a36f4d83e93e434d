from django import forms

from accounts.models import ApiKeyScope


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=120, label="Organization name")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Key name")
    scope = forms.ChoiceField(choices=ApiKeyScope.choices, label="Scope")
