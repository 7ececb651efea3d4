from django import forms

SERVICE_CHOICES = [
    ("generic_tags", "Generic tagging"),
    ("colors_product", "Dominant colours (product)"),
    ("colors_generic", "Dominant colours (generic)"),
    ("fashion_tags", "Fashion tagging"),
    ("homedecor_tags", "Home decor tagging"),
    ("recognition", "Custom recognition task"),
]


class SubmitForm(forms.Form):
    service = forms.ChoiceField(choices=SERVICE_CHOICES)
    lang = forms.ChoiceField(
        label="Language", choices=[("en", "English"), ("cs", "Czech")], required=False, initial="en"
    )
    mode = forms.ChoiceField(
        label="Tagging mode",
        choices=[("complex", "With probabilities"), ("simple", "Simple")],
        required=False,
        initial="complex",
    )
    task_id = forms.CharField(label="Recognition task id", required=False, max_length=64)
    colors = forms.IntegerField(
        label="Number of colours", required=False, min_value=1, max_value=12
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("service") == "recognition" and not cleaned.get("task_id"):
            self.add_error("task_id", "A custom recognition task needs its task id.")
        return cleaned

    def options(self) -> dict:
        """Only the options that mean something for the chosen service."""
        data, service = self.cleaned_data, self.cleaned_data["service"]
        if service == "generic_tags":
            return {"lang": data.get("lang") or "en", "mode": data.get("mode") or "complex"}
        if service == "recognition":
            return {"task_id": data["task_id"]}
        if service.startswith("colors_") and data.get("colors"):
            return {"colors": data["colors"]}
        return {}
