"""Distributions for the current filter, drawn server-side as bars. Best labels
are counted over every matching record; tags and colours come from the latest
records of the selection (a sample, said so on the page), which keeps the page
quick at a million rows."""

from collections import Counter, defaultdict

from django.db.models import Count

SAMPLE = 5000
TOP = 15


def insights_for(qs) -> dict:
    labels = list(
        qs.exclude(best_label="")
        .values("best_label")
        .annotate(n=Count("pk"))
        .order_by("-n", "best_label")[:TOP]
    )
    sample = list(
        qs.order_by("-created_at", "-record_id").values_list("top_tags", "colors")[:SAMPLE]
    )
    tags, colors = Counter(), defaultdict(float)
    names = {}
    for top_tags, palette in sample:
        tags.update(t["name"] for t in top_tags if t.get("name"))
        for color in palette:
            colors[color["hex"]] += color.get("percentage") or 0
            names.setdefault(color["hex"], color.get("name") or "")
    return {
        "labels": _bars([(row["best_label"], row["n"]) for row in labels]),
        "tags": _bars(tags.most_common(TOP)),
        "palette": _palette(colors, names),
        "sampled": len(sample),
        "sample_cap": SAMPLE,
    }


def _bars(pairs) -> list[dict]:
    top = max((n for _, n in pairs), default=0) or 1
    return [{"name": name, "count": n, "width": round(100 * n / top, 1)} for name, n in pairs]


def _palette(weights, names) -> list[dict]:
    total = sum(weights.values()) or 1
    ranked = sorted(weights.items(), key=lambda item: -item[1])[:24]
    return [
        {"hex": hex_, "name": names[hex_], "share": round(100 * w / total, 1)} for hex_, w in ranked
    ]
