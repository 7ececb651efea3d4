"""Realistic demo data, fast: teams, records with fields, submissions, jobs in
every state, results with labels, tags and colours, visual searches with their
answers, and the summaries of all of it.

Rows are built in Python as the engine would store them, summaries by the same
pure `summary_build` that `summary_refresh` uses, and written with explicit ids
in large transactions (`rows.rows_write`: executemany on SQLite, COPY on
PostgreSQL): a million records in a few minutes. Run it while nobody else writes
to the database (it hands out the ids itself).

Records have no image files (they are URL records), so nothing is written to
the media storage."""

import random
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from ximilar_portal.accounts.models import Membership, Role, Team, User
from ximilar_portal.lib.rows import ids_reserve, rows_write, sequences_reset, statistics_refresh
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.calls import SEARCH
from ximilar_portal.submissions.models import (
    Collection,
    RecordJob,
    Result,
    SearchAnswer,
    Submission,
)

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
ANSWERS_PER_SEARCH = 5
WRITTEN = [Record, RecordJob, Result, SearchAnswer, SummaryLabel]


def demo_data_generate(*, teams=3, records=10_000, answers=0, seed=7, chunk=20_000, team=None):
    """`records` spread over `teams` new demo teams (or all into `team`), and
    about `answers` search answers (5 per visual search of a random record)."""
    rng = random.Random(seed)
    targets = [team] if team else [_demo_team(i) for i in range(teams)]
    made = {"records": 0, "teams": len(targets), "answers": 0}
    for index, start in enumerate(range(0, records, chunk)):
        size = min(chunk, records - start)
        searches = _share(answers, start + size, records) - _share(answers, start, records)
        target = targets[index % len(targets)]
        with transaction.atomic():
            written = _chunk(rng, target, size, searches=searches)
        made["records"] += written["records"]
        made["answers"] += written["answers"]
    for target in targets:
        _mark_synced(target)
    sequences_reset(WRITTEN)
    statistics_refresh(WRITTEN + [RecordSummary])
    return made


def _share(answers, upto, records) -> int:
    """Visual searches made among the first `upto` records."""
    return (answers // ANSWERS_PER_SEARCH) * upto // max(1, records)


def _demo_team(i) -> Team:
    team = Team.objects.create(name=f"Demo team {i + 1}")
    email = f"demo{i + 1}-{team.pk}@example.com"
    user = User.objects.create_user(email=email, password=None)
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return team


def _chunk(rng, team, size, *, searches) -> dict:
    owner = Membership.objects.filter(team=team).order_by("pk").first()
    user_id = owner.user_id if owner else None
    submissions = [
        Submission.objects.create(team=team, created_by_id=user_id, service=service)
        for service in ("generic_tags", "colors_product")
    ]
    ids = ids_reserve(Record, size)
    now = timezone.now()
    records = [_record(rng, team, user_id, now, pk) for pk in ids]
    pairs = _jobs_and_results(rng, records, submissions)
    answers = []
    if searches:
        search = _search_submission(team, user_id)
        submissions.append(search)
        answers = _searches(rng, records, search, searches, pairs)
    _number(pairs, answers)
    results = [result for _, result in pairs if result is not None]
    rows_write(Record, records)
    rows_write(RecordJob, [job for job, _ in pairs])
    rows_write(Result, results)
    rows_write(SearchAnswer, answers)
    _summaries(records, pairs, results, submissions, now)
    return {"records": size, "answers": len(answers)}


def _record(rng, team, user_id, now, pk) -> Record:
    # Named after the id, so a second run into the same team adds new `_id`s.
    category = rng.choice(CATEGORIES)
    price = Decimal(rng.randrange(500, 50_000)) / 100 if rng.random() < 0.9 else None
    created = now - timedelta(seconds=rng.randrange(0, 365 * 86400))
    return Record(
        pk=pk,
        team_id=team.pk,
        created_by_id=user_id,
        created_at=created,
        updated_at=created,
        ximilar_id=f"demo-{team.pk}-{pk:07d}",
        image_url=f"https://images.example.com/{team.pk}/{pk}.jpg",
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


def _jobs_and_results(rng, records, submissions) -> list:
    """(job, result or None) pairs, a record's jobs together in the order sent."""
    tagging, colors = submissions
    pairs = []
    for record in records:
        state = _state(rng)
        if state is None:
            continue
        for submission in [tagging] + ([colors] if rng.random() < 0.5 else []):
            job = _job(record, submission, state)
            result = _result(rng, record, submission) if state == "done" else None
            pairs.append((job, result))
    return pairs


def _job(record, submission, state) -> RecordJob:
    failed = state == "failed"
    finished = record.created_at + timedelta(seconds=1) if state in ("done", "failed") else None
    return RecordJob(
        submission_id=submission.pk,
        record_id=record.pk,
        team_id=record.team_id,
        state=state,
        attempts=1,
        error_class="bad_request" if failed else "",
        error_message="Ximilar could not process this record: bad image (400)" if failed else "",
        created_at=record.created_at,
        updated_at=finished or record.created_at,
        finished_at=finished,
    )


def _result(rng, record, submission) -> Result:
    created = record.created_at + timedelta(seconds=rng.randrange(2, 600))
    common = {
        "record_id": record.pk,
        "team_id": record.team_id,
        "service": submission.service,
        "created_at": created,
        "is_current": True,
        "from_sandbox": True,
    }
    if submission.service == "colors_product":
        picked = rng.sample(COLORS, 3)
        shares = [0.6, 0.3, 0.1]
        colors = [
            {"rgb": None, "hex": h, "name": n, "simple_name": n, "percentage": p}
            for (h, n), p in zip(picked, shares, strict=True)
        ]
        return Result(**common, raw={"_dominant_colors": colors}, colors=colors)
    best = rng.choice(LABELS)
    prob = round(rng.uniform(0.3, 0.99), 3)
    tags = [
        {"name": t, "prob": round(rng.uniform(0.2, 0.95), 3), "group": None}
        for t in rng.sample(TAGS, 3)
    ]
    labels = [{"name": best, "prob": prob}]
    raw = {"_tags": tags, "best_label": {"name": best, "prob": prob}}
    return Result(**common, raw=raw, best_label=best, best_prob=prob, labels=labels, tags=tags)


def _search_submission(team, user_id) -> Submission:
    collection, _ = Collection.objects.get_or_create(
        team=team,
        name="Demo products",
        defaults={"collection_id": f"demo-collection-{team.pk}", "created_by_id": user_id},
    )
    return Submission.objects.create(
        team=team,
        created_by_id=user_id,
        service=SEARCH,
        collection=collection,
        options={"k": ANSWERS_PER_SEARCH},
    )


def _searches(rng, records, search, count, pairs) -> list:
    """`count` visual searches of records of this chunk, each answered by
    five other records of it; their jobs and results join `pairs`."""
    if len(records) <= ANSWERS_PER_SEARCH:
        return []
    answers = []
    for query in rng.sample(records, min(count, len(records))):
        found = rng.sample(records, ANSWERS_PER_SEARCH)
        distances = [round(rank * 0.1 + rng.random() * 0.1, 4) for rank in range(1, 6)]
        raw = {
            "answer_records": [
                {"_id": r.ximilar_id, "_distance": d} for r, d in zip(found, distances, strict=True)
            ]
        }
        created = query.created_at + timedelta(seconds=rng.randrange(600, 86400))
        job = _job(query, search, "done")
        result = Result(
            record_id=query.pk,
            team_id=query.team_id,
            service=SEARCH,
            created_at=created,
            raw=raw,
            is_current=True,
            from_sandbox=True,
        )
        pairs.append((job, result))
        for rank, (answer, distance) in enumerate(zip(found, distances, strict=True), start=1):
            answers.append(
                SearchAnswer(
                    team_id=query.team_id,
                    result=result,
                    query_record_id=query.pk,
                    rank=rank,
                    answer_id=answer.ximilar_id,
                    distance=distance,
                    fields={"_id": answer.ximilar_id},
                    record_id=answer.pk,
                )
            )
    return answers


def _number(pairs, answers) -> None:
    """Ids for the jobs, results and answers, and the links between them."""
    for (job, _), pk in zip(pairs, ids_reserve(RecordJob, len(pairs)), strict=True):
        job.pk = pk
    results = [(job, result) for job, result in pairs if result is not None]
    for (job, result), pk in zip(results, ids_reserve(Result, len(results)), strict=True):
        result.pk, result.job_id = pk, job.pk
    for answer, pk in zip(answers, ids_reserve(SearchAnswer, len(answers)), strict=True):
        answer.pk, answer.result_id = pk, answer.result.pk


def _summaries(records, pairs, results, submissions, now) -> None:
    """What `summary_refresh` would compute, from the rows in memory: jobs in
    id order, results oldest first, as the same dicts it reads."""
    by_pk = {submission.pk: submission for submission in submissions}
    jobs_by, results_by = {}, {}
    for job, _ in sorted(pairs, key=lambda pair: pair[0].pk):
        submission = by_pk[job.submission_id]
        jobs_by.setdefault(job.record_id, []).append(
            {
                "state": job.state,
                "error_message": job.error_message,
                "submission__service": submission.service,
                "submission__created_by_id": submission.created_by_id,
            }
        )
    for result in sorted(results, key=lambda r: (r.created_at, r.pk)):
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
    summaries = [summary for summary, _ in built]
    for summary in summaries:
        summary.refreshed_at = now
    labels = [label for _, labels in built for label in labels]
    for label, pk in zip(labels, ids_reserve(SummaryLabel, len(labels)), strict=True):
        label.pk = pk
    rows_write(RecordSummary, summaries)
    rows_write(SummaryLabel, labels)


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
