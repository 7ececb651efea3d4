from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import UserCreationForm

from .models import Role, User


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


class TeamForm(forms.Form):
    name = forms.CharField(label="Team name", max_length=100)

    def clean_name(self):
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the team a name.")
        return name


def grantable_roles(actor_role: str):
    """The roles an owner or admin may hand out: only owners make owners."""
    return [
        (value, label)
        for value, label in Role.choices
        if value != Role.OWNER or actor_role == Role.OWNER
    ]


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, actor_role=Role.OWNER, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = grantable_roles(actor_role)

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"]).strip()


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class InvitedSignupForm(forms.Form):
    """The password of an account made from an invitation; the address is the
    invitation's."""

    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, email="", **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            try:
                password_validation.validate_password(first, User(email=self.email))
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned
