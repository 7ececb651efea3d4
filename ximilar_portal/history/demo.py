"""Realistic demo data, fast: teams, records with fields, submissions, jobs in
every state, results with labels, tags and colours, and their summaries, all
written with bulk_create in chunks (a million records in minutes).

Records have no image files (they are URL records), so nothing is written to
the media storage."""

import contextlib
import random
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from ximilar_portal.accounts.models import Membership, Role, Team, User
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import RecordJob, Result, Submission

from .models import RecordSummary, SummaryLabel, SyncMark
from .services import summary_build

LABELS = "dress shirt jeans jacket shoe sneaker bag watch chair sofa lamp table rug".split()  # noqa: SIM905
TAGS = (  # noqa: SIM905
    "red blue green black white beige cotton leather wood metal summer winter casual "
    "formal striped floral vintage modern outdoor indoor kids sport luxury eco"
).split()
CATEGORIES = "fashion footwear accessories furniture decor garden".split()  # noqa: SIM905
BRANDS = "acme nordic urbanwear lumen oakline".split()  # noqa: SIM905
COLORS = [
    ("#1f2a44", "navy"),
    ("#c0392b", "red"),
    ("#f5f0e6", "cream"),
    ("#2e7d32", "green"),
    ("#111111", "black"),
    ("#d4a373", "tan"),
    ("#9e9e9e", "grey"),
    ("#fdd835", "yellow"),
]
STATES = [("done", 85), ("failed", 5), ("queued", 3), ("blocked", 2), (None, 5)]


@contextlib.contextmanager
def dated_writes():
    """Let bulk_create keep the spread-out creation dates we give it."""
    fields = [Record._meta.get_field("created_at"), Result._meta.get_field("created_at")]
    saved = [f.auto_now_add for f in fields]
    for f in fields:
        f.auto_now_add = False
    try:
        yield
    finally:
        for f, value in zip(fields, saved, strict=True):
            f.auto_now_add = value


def demo_data_generate(*, teams=3, records=10_000, answers=0, seed=7, chunk=5000, team=None):
    """`records` spread over `teams` new demo teams (or all into `team`)."""
    rng = random.Random(seed)
    targets = [team] if team else [_demo_team(i) for i in range(teams)]
    made = 0
    with dated_writes():
        for index, start in enumerate(range(0, records, chunk)):
            target = targets[index % len(targets)]
            made += _chunk(rng, target, min(chunk, records - start), offset=start)
    for target in targets:
        _mark_synced(target)
    answer_count = _answers(rng, targets, answers) if answers else 0
    return {"records": made, "teams": len(targets), "answers": answer_count}


def _demo_team(i) -> Team:
    team = Team.objects.create(name=f"Demo team {i + 1}")
    email = f"demo{i + 1}-{team.pk}@example.com"
    user = User.objects.create_user(email=email, password=None)
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return team


def _chunk(rng, team, size, *, offset) -> int:
    owner = Membership.objects.filter(team=team).order_by("pk").first()
    user_id = owner.user_id if owner else None
    now = timezone.now()
    with transaction.atomic():
        records = Record.objects.bulk_create(
            [_record(rng, team, user_id, now, offset + i) for i in range(size)]
        )
        tagging = Submission.objects.create(
            team=team, created_by_id=user_id, service="generic_tags"
        )
        colors = Submission.objects.create(
            team=team, created_by_id=user_id, service="colors_product"
        )
        jobs, results = _jobs_and_results(rng, records, tagging, colors)
        RecordJob.objects.bulk_create([job for job, _ in jobs])
        for job, result in jobs:
            if result is not None:
                result.job_id = job.pk
        Result.objects.bulk_create(results)
        _summaries(records, jobs, results, tagging, colors)
    return len(records)


def _record(rng, team, user_id, now, n) -> Record:
    category = rng.choice(CATEGORIES)
    price = Decimal(rng.randrange(500, 50_000)) / 100 if rng.random() < 0.9 else None
    return Record(
        team=team,
        created_by_id=user_id,
        created_at=now - timedelta(seconds=rng.randrange(0, 365 * 86400)),
        ximilar_id=f"demo-{team.pk}-{n:07d}",
        image_url=f"https://images.example.com/{team.pk}/{n}.jpg",
        product_id=f"SKU-{rng.randrange(1, 200_000):06d}",
        category=category,
        price=price,
        tags=rng.sample(TAGS, rng.randint(0, 3)),
        fields={"brand": rng.choice(BRANDS), "stock": rng.randrange(0, 100)},
    )


def _state(rng):
    roll, total = rng.randrange(100), 0
    for state, weight in STATES:
        total += weight
        if roll < total:
            return state
    return None


def _jobs_and_results(rng, records, tagging, colors):
    jobs, results = [], []
    for record in records:
        state = _state(rng)
        if state is None:
            continue
        services = [tagging] + ([colors] if rng.random() < 0.5 else [])
        for submission in services:
            job = RecordJob(
                submission=submission,
                record=record,
                team_id=record.team_id,
                state=state,
                attempts=1,
                error_message="Ximilar could not process this record: bad image (400)"
                if state == "failed"
                else "",
                finished_at=record.created_at if state == "done" else None,
            )
            result = _result(rng, record, submission) if state == "done" else None
            if result is not None:
                results.append(result)
            jobs.append((job, result))
    return jobs, results


def _result(rng, record, submission) -> Result:
    created = record.created_at + timedelta(seconds=rng.randrange(2, 600))
    common = {"record": record, "team_id": record.team_id, "service": submission.service}
    if submission.service == "colors_product":
        picked = rng.sample(COLORS, 3)
        shares = [0.6, 0.3, 0.1]
        colors = [
            {"rgb": None, "hex": h, "name": n, "simple_name": n, "percentage": p}
            for (h, n), p in zip(picked, shares, strict=True)
        ]
        return Result(**common, created_at=created, raw={"_dominant_colors": colors}, colors=colors)
    best = rng.choice(LABELS)
    prob = round(rng.uniform(0.3, 0.99), 3)
    tags = [
        {"name": t, "prob": round(rng.uniform(0.2, 0.95), 3), "group": None}
        for t in rng.sample(TAGS, 3)
    ]
    labels = [{"name": best, "prob": prob}]
    raw = {"_tags": tags, "best_label": {"name": best, "prob": prob}}
    return Result(
        **common,
        created_at=created,
        raw=raw,
        best_label=best,
        best_prob=prob,
        labels=labels,
        tags=tags,
        from_sandbox=True,
    )


def _summaries(records, jobs, results, tagging, colors) -> None:
    service_of = {tagging.pk: tagging, colors.pk: colors}
    jobs_by, results_by = {}, {}
    for job, _ in jobs:
        submission = service_of[job.submission_id]
        jobs_by.setdefault(job.record_id, []).append(
            {
                "state": job.state,
                "error_message": job.error_message,
                "submission__service": submission.service,
                "submission__created_by_id": submission.created_by_id,
            }
        )
    for result in sorted(results, key=lambda r: r.created_at):
        results_by.setdefault(result.record_id, []).append(
            {
                "service": result.service,
                "best_label": result.best_label,
                "best_prob": result.best_prob,
                "labels": result.labels,
                "tags": result.tags,
                "colors": result.colors,
            }
        )
    built = [summary_build(r, jobs_by.get(r.pk, []), results_by.get(r.pk, [])) for r in records]
    RecordSummary.objects.bulk_create([s for s, _ in built], batch_size=1000)
    SummaryLabel.objects.bulk_create(
        [label for _, labels in built for label in labels], batch_size=2000
    )


def _mark_synced(team) -> None:
    def last(model):
        return (
            model.objects.filter(team=team).order_by("-pk").values_list("pk", flat=True).first()
            or 0
        )

    SyncMark.objects.update_or_create(
        team=team,
        defaults={
            "last_record_id": last(Record),
            "last_job_id": last(RecordJob),
            "last_result_id": last(Result),
        },
    )


def _answers(rng, teams, count) -> int:
    from .answers import demo_answers_create

    return demo_answers_create(rng=rng, teams=teams, count=count)
