"""Mongo-style filters on the metadata of collection records, as `visualKNN`,
`random` and `allRecords` take them: {"category": {"$in": ["a", "b"]}, "brand": "x"}.

Supported: plain equality, $eq $ne $gt $gte $lt $lte $in $nin $exists, and
$and $or $nor. As in MongoDB, a list-valued field matches when any of its
elements matches (or the list as a whole does), and $ne/$nin match when none
does. Dotted names reach into nested objects.
"""

from numbers import Number


class FilterError(ValueError):
    pass


def matches(fields: dict, query) -> bool:
    if not isinstance(query, dict):
        raise FilterError("filter must be an object")
    return all(clause_matches(fields, key, condition) for key, condition in query.items())


def clause_matches(fields: dict, key: str, condition) -> bool:
    if key in ("$and", "$or", "$nor"):
        if not isinstance(condition, list):
            raise FilterError(f"{key} needs a list of filters")
        results = [matches(fields, part) for part in condition]
        if key == "$and":
            return all(results)
        return any(results) if key == "$or" else not any(results)
    if key.startswith("$"):
        raise FilterError(f"unsupported filter operator {key}")
    present, value = lookup(fields, key)
    if is_operator_object(condition):
        return all(operator_matches(op, present, value, arg) for op, arg in condition.items())
    return present and any(equal(candidate, condition) for candidate in candidates(value))


def lookup(fields: dict, dotted_name: str) -> tuple[bool, object]:
    value: object = fields
    for part in dotted_name.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def is_operator_object(condition) -> bool:
    if not isinstance(condition, dict) or not condition:
        return False
    return all(key.startswith("$") for key in condition)


def candidates(value) -> list:
    """The value itself, and each element when it is a list."""
    return [value, *value] if isinstance(value, list) else [value]


def equal(a, b) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):  # True is not 1 in a filter
        return False
    return a == b


def comparable(a, b) -> bool:
    both_numbers = all(isinstance(x, Number) and not isinstance(x, bool) for x in (a, b))
    return both_numbers or (isinstance(a, str) and isinstance(b, str))


def compare(check):
    return lambda a, b: comparable(a, b) and check(a, b)


def is_in(value, options) -> bool:
    if not isinstance(options, list):
        raise FilterError("$in and $nin need a list")
    return any(equal(value, option) for option in options)


POSITIVE = {
    "$eq": equal,
    "$gt": compare(lambda a, b: a > b),
    "$gte": compare(lambda a, b: a >= b),
    "$lt": compare(lambda a, b: a < b),
    "$lte": compare(lambda a, b: a <= b),
    "$in": is_in,
}
NEGATIVE = {"$ne": "$eq", "$nin": "$in"}


def operator_matches(op: str, present: bool, value, arg) -> bool:
    if op == "$exists":
        return present == bool(arg)
    if op in NEGATIVE:
        return not operator_matches(NEGATIVE[op], present, value, arg)
    if op not in POSITIVE:
        raise FilterError(f"unsupported filter operator {op}")
    if op == "$in" and not isinstance(arg, list):
        raise FilterError("$in and $nin need a list")
    return present and any(POSITIVE[op](candidate, arg) for candidate in candidates(value))
