"""The history's filters, read from the URL's query string. They validate and
normalise (lower case, lists split on commas); `selectors.summaries_filtered`
turns the cleaned values into a query."""

from django import forms

from ximilar_portal.lib import ximilar

from .models import SavedView, Status

STATUS_CHOICES = [
    ("", "Any status"),
    (Status.DONE, "Done"),
    (Status.FAILED, "Failed"),
    (Status.BLOCKED, "Blocked"),
    (Status.WAITING, "Waiting"),
    (Status.CANCELLED, "Cancelled"),
    ("none", "Not sent yet"),
]
SORT_CHOICES = [
    ("newest", "Newest first"),
    ("oldest", "Oldest first"),
    ("prob_desc", "Highest probability"),
    ("prob_asc", "Lowest probability"),
    ("price_desc", "Highest price"),
    ("price_asc", "Lowest price"),
]
LAYOUT_CHOICES = [("grid", "Grid"), ("table", "Table")]
DATE = forms.DateInput(attrs={"type": "date"})
YES_NO = [("", "Either"), ("yes", "Yes"), ("no", "No")]
FILTER_FIELDS = [
    "q",
    "service",
    "status",
    "best_label",
    "label",
    "min_prob",
    "tags_any",
    "tags_all",
    "tags_none",
    "category",
    "product_id",
    "price_min",
    "price_max",
    "field",
    "date_from",
    "date_to",
    "submitted_by",
    "has_error",
]


def service_choices():
    return [("", "Any service")] + [(key, s.label) for key, s in ximilar.SERVICES.items()]


class TagList(forms.CharField):
    """ "red, summer" -> ["red", "summer"]."""

    def to_python(self, value):
        text = super().to_python(value)
        return [t.strip().lower() for t in text.split(",") if t.strip()]


class HistoryFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=200)
    service = forms.ChoiceField(required=False, choices=service_choices)
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)
    best_label = forms.CharField(label="Best label", required=False, max_length=255)
    label = forms.CharField(label="Any label", required=False, max_length=255)
    min_prob = forms.FloatField(
        label="with probability ≥",
        required=False,
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "any", "placeholder": "0.5"}),
    )
    tags_any = TagList(label="Tags: any of", required=False, max_length=500)
    tags_all = TagList(label="Tags: all of", required=False, max_length=500)
    tags_none = TagList(label="Tags: none of", required=False, max_length=500)
    category = forms.CharField(required=False, max_length=255)
    product_id = forms.CharField(label="product_id", required=False, max_length=255)
    price_min = forms.DecimalField(label="Price from", required=False, max_digits=14)
    price_max = forms.DecimalField(label="Price to", required=False, max_digits=14)
    field = forms.CharField(
        label="Custom field", required=False, max_length=300, help_text="name=value"
    )
    date_from = forms.DateField(label="From", required=False, widget=DATE)
    date_to = forms.DateField(label="To", required=False, widget=DATE)
    submitted_by = forms.TypedChoiceField(label="By", required=False, coerce=int)
    has_error = forms.ChoiceField(label="Has an error", required=False, choices=YES_NO)
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)
    layout = forms.ChoiceField(required=False, choices=LAYOUT_CHOICES)

    def __init__(self, data=None, *, members=()):
        super().__init__(data)
        self.fields["submitted_by"].choices = [("", "Anyone")] + [
            (user.pk, user.email) for user in members
        ]

    def clean_field(self):
        value = self.cleaned_data["field"].strip()
        if value and "=" not in value:
            raise forms.ValidationError("Write the custom field as name=value, e.g. color=red.")
        name, _, wanted = value.partition("=")
        return f"{name.strip()}={wanted.strip()}".lower() if value else ""

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("price_min"), cleaned.get("price_max")
        if low is not None and high is not None and low > high:
            self.add_error("price_max", "The upper price is below the lower one.")
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        for name in ("q", "best_label", "label", "category", "product_id"):
            if isinstance(cleaned.get(name), str):
                cleaned[name] = cleaned[name].strip()
        cleaned["sort"] = cleaned.get("sort") or "newest"
        cleaned["layout"] = cleaned.get("layout") or "grid"
        return cleaned

    def active_filters(self) -> dict:
        """Only the filters that were given: what the selector applies."""
        data = self.cleaned_data
        return {name: data[name] for name in FILTER_FIELDS if data.get(name) not in ("", None, [])}


class SavedViewForm(forms.ModelForm):
    class Meta:
        model = SavedView
        fields = ["name", "query", "shared"]
        labels = {"shared": "Share with the team"}
        widgets = {"query": forms.HiddenInput}

    def clean_query(self):
        return self.cleaned_data["query"].lstrip("?")


EXPORT_FORMATS = [("csv", "CSV"), ("json", "JSON"), ("jsonl", "JSON Lines")]


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=EXPORT_FORMATS)
    query = forms.CharField(required=False, max_length=2000)
    ids = forms.TypedMultipleChoiceField(required=False, coerce=int)

    def __init__(self, data=None):
        super().__init__(data)
        # Any id is accepted here; the selector keeps only the team's records.
        self.fields["ids"].valid_value = lambda value: str(value).isdigit()
