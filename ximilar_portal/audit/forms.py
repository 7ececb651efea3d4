from django import forms


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(label="Action", required=False)
    actor = forms.TypedChoiceField(label="Person", required=False, coerce=int, empty_value=None)

    def __init__(self, *args, actions=(), actors=(), **kwargs):
        super().__init__(*args, **kwargs)
        groups = sorted({action.split(".")[0] for action in actions})
        self.fields["action"].choices = (
            [("", "All actions")]
            + [(group, f"{group}.*") for group in groups]
            + [(action, action) for action in actions]
        )
        self.fields["actor"].choices = [("", "Everyone")] + [
            (user.pk, user.email) for user in actors
        ]
