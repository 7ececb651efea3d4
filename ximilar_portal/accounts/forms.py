from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import User


class SignupForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class TokenForm(forms.Form):
    """Write-only: the field is never filled back in, whatever happens."""

    token = forms.CharField(
        label="Ximilar API token",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        min_length=8,
        max_length=500,
        help_text="From the Ximilar app, Settings » API token. Stored encrypted; "
        "afterwards only its last four characters are shown.",
    )
    workspace = forms.CharField(
        label="Workspace id (optional)",
        required=False,
        max_length=64,
        help_text="Only for custom recognition tasks outside your default workspace.",
    )

    def clean_token(self):
        token = self.cleaned_data["token"].strip()
        if any(ch.isspace() for ch in token):
            raise forms.ValidationError("A token has no spaces in it; check what was pasted.")
        return token
