from django import template

from ximilar_portal.records.codec import format_custom_value

register = template.Library()


@register.filter
def typed(value) -> str:
    """A custom field's value as it is typed in the form: true, 12, ["a"], text."""
    return format_custom_value(value)
