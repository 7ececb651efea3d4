import json

from django import forms

from ximilar_portal.lib import ximilar

from .calls import INSERT, SEARCH
from .models import Collection

SERVICE_CHOICES = [
    ("generic_tags", "Generic tagging"),
    ("colors_product", "Dominant colours (product)"),
    ("colors_generic", "Dominant colours (generic)"),
    ("fashion_tags", "Fashion tagging"),
    ("homedecor_tags", "Home decor tagging"),
    ("recognition", "Custom recognition task"),
    (INSERT, "Insert into a similarity collection"),
    (SEARCH, "Visual search (each record as the query)"),
]
COLLECTION_SERVICES = (INSERT, SEARCH)


class SubmitForm(forms.Form):
    """Which service, with the options that mean something for it."""

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
    version = forms.IntegerField(
        label="Task version (optional)", required=False, min_value=1, max_value=100000
    )
    endpoint = forms.ChoiceField(
        label="Fashion endpoint",
        choices=[(e, e) for e in sorted(ximilar.FASHION_ENDPOINTS)],
        required=False,
        initial="detect_tags",
    )
    colors = forms.IntegerField(
        label="Number of colours", required=False, min_value=1, max_value=12
    )
    collection = forms.ModelChoiceField(
        queryset=Collection.objects.none(), required=False, empty_label="Choose a collection"
    )
    k = forms.IntegerField(
        label="Answers per query (k)", required=False, min_value=1, max_value=1000, initial=5
    )
    filter = forms.CharField(
        label="Filter (JSON, optional)",
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": '{"category": "shoes"}'}),
    )
    answer_fields = forms.CharField(
        label="Fields to return",
        required=False,
        max_length=500,
        initial="_id",
        help_text="Comma-separated, e.g. _id, product_id, category",
    )

    def __init__(self, *args, team=None, **kwargs):
        super().__init__(*args, **kwargs)
        if team is not None:
            self.fields["collection"].queryset = Collection.objects.filter(team=team)

    def clean_filter(self):
        text = self.cleaned_data.get("filter", "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"The filter is not valid JSON: {error}.") from error
        if not isinstance(value, dict):
            raise forms.ValidationError('The filter must be a JSON object, like {"a": 1}.')
        return value

    def clean_answer_fields(self):
        text = self.cleaned_data.get("answer_fields") or "_id"
        names = [name.strip() for name in text.split(",") if name.strip()]
        return list(dict.fromkeys(["_id", *names]))

    def clean(self):
        cleaned = super().clean()
        service = cleaned.get("service")
        if service == "recognition" and not cleaned.get("task_id"):
            self.add_error("task_id", "A custom recognition task needs its task id.")
        if service in COLLECTION_SERVICES and not cleaned.get("collection"):
            self.add_error("collection", "Choose the collection (register it first).")
        return cleaned

    def options(self) -> dict:
        """Only the options that mean something for the chosen service."""
        data, service = self.cleaned_data, self.cleaned_data["service"]
        if service == "generic_tags":
            return {"lang": data.get("lang") or "en", "mode": data.get("mode") or "complex"}
        if service == "recognition":
            options = {"task_id": data["task_id"]}
            return options | ({"version": data["version"]} if data.get("version") else {})
        if service == "fashion_tags":
            return {"endpoint": data.get("endpoint") or "detect_tags"}
        if service.startswith("colors_") and data.get("colors"):
            return {"colors": data["colors"]}
        if service == SEARCH:
            options = {"k": data.get("k") or 5, "fields": data["answer_fields"]}
            return options | ({"filter": data["filter"]} if data.get("filter") else {})
        return {}


class CollectionForm(forms.ModelForm):
    class Meta:
        model = Collection
        fields = ["name", "collection_type", "collection_id"]
        help_texts = {"collection_id": "As shown in Ximilar's app (the collection-id header)."}

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        clash = Collection.objects.filter(team=self.team, name__iexact=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("The team already has a collection with this name.")
        return name

    def clean_collection_id(self):
        return self.cleaned_data["collection_id"].strip()
