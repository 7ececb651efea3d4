"""Walks every URL pattern of the portal as an outsider, an anonymous visitor and a
viewer. A new URL pattern that is not listed here makes the first test fail, so
nothing is added without its isolation being checked."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from ximilar_portal.accounts.membership_services import invitation_create
from ximilar_portal.accounts.models import Credential, Invitation, Membership
from ximilar_portal.accounts.services import credential_set
from ximilar_portal.audit.models import AuditEvent
from ximilar_portal.audit.services import audit_record
from ximilar_portal.history.models import Export, SavedView
from ximilar_portal.records.models import Record, UploadBatch
from ximilar_portal.submissions.models import Collection
from ximilar_portal.submissions.services import submission_create

from .conftest import SANDBOX_TOKEN, client_for, jpeg_bytes, make_user

MARK = "isomark7q"  # in this team's names: must never appear on an outsider's page

pytestmark = pytest.mark.django_db

# URLs about one object of a team: an outsider must get 404 on every method.
OBJECT_URLS = {
    "records:detail": lambda s: {"pk": s["record"].pk},
    "records:image": lambda s: {"pk": s["record"].pk},
    "records:thumbnail": lambda s: {"pk": s["record"].pk},
    "records:edit": lambda s: {"pk": s["record"].pk},
    "records:delete": lambda s: {"pk": s["record"].pk},
    "records:batch": lambda s: {"pk": s["batch"].pk},
    "records:batch_file": lambda s: {"pk": s["batch"].pk},
    "records:import_confirm": lambda s: {"pk": s["batch"].pk},
    "submissions:submit_record": lambda s: {"record_pk": s["record"].pk},
    "submissions:detail": lambda s: {"pk": s["submission"].pk},
    "submissions:progress": lambda s: {"pk": s["submission"].pk},
    "submissions:cancel": lambda s: {"pk": s["submission"].pk},
    "submissions:delete": lambda s: {"pk": s["submission"].pk},
    "submissions:retry": lambda s: {"pk": s["submission"].pk},
    "submissions:job_retry": lambda s: {
        "pk": s["submission"].pk,
        "job_pk": s["submission"].jobs.get().pk,
    },
    "submissions:collection_edit": lambda s: {"pk": s["collection"].pk},
    "submissions:collection_delete": lambda s: {"pk": s["collection"].pk},
    "history:record": lambda s: {"pk": s["record"].pk},
    "history:export_download": lambda s: {"pk": s["export"].pk},
    "history:view_update": lambda s: {"pk": s["saved_view"].pk},
    "history:view_delete": lambda s: {"pk": s["saved_view"].pk},
    "accounts:team_switch": lambda s: {"pk": s["team"].pk},
    "accounts:invitation_revoke": lambda s: {"pk": s["invitation"].pk},
    "accounts:member_role": lambda s: {"pk": s["member"].pk},
    "accounts:member_remove": lambda s: {"pk": s["member"].pk},
}
# URLs about the active team as a whole: an outsider sees their own team there.
TEAM_URLS = {"records:list", "records:new", "accounts:token"}
TEAM_URLS |= {"records:bulk", "records:upload", "records:urls", "records:import"}
TEAM_URLS |= {
    "history:list",
    "history:insights",
    "history:export",
    "history:exports",
    "history:submissions",
    "history:view_create",
}
TEAM_URLS |= {"accounts:team", "accounts:team_create", "accounts:invite", "accounts:team_leave"}
TEAM_URLS |= {"accounts:token_remove", "accounts:token_test", "audit:list"}
TEAM_URLS |= {"submissions:new", "submissions:list", "submissions:list_status"}
TEAM_URLS |= {"submissions:queue", "submissions:collections", "submissions:collection_new"}
# Pages for anyone.
PUBLIC_URLS = {"accounts:signup", "accounts:login", "accounts:logout"}
PUBLIC_URLS |= {"accounts:password_reset", "accounts:password_reset_done"}
PUBLIC_URLS |= {"accounts:password_reset_confirm", "accounts:password_reset_complete"}
# A capability link: whoever holds the secret sees it (tests in test_teams.py).
PUBLIC_URLS |= {"accounts:invitation"}
# Staff only, everyone else gets 404 (tests in test_ops.py).
STAFF_URLS = {"ops:page"}
# What a viewer (read-only member) may not do.
WRITE_URLS = {"records:new", "submissions:submit_record", "accounts:token"}
# What only owners and admins may do (or see): a member gets 403 too.
MANAGE_URLS = {"accounts:token", "accounts:token_remove", "accounts:token_test", "accounts:invite"}
MANAGE_URLS |= {"accounts:invitation_revoke", "accounts:member_role", "accounts:member_remove"}
MANAGE_URLS |= {"audit:list"}
READABLE_BY_ALL = {"accounts:token"}  # members see the token's state, not change it
WRITE_URLS |= MANAGE_URLS
WRITE_URLS |= {"records:bulk", "records:upload", "records:urls", "records:import"}
WRITE_URLS |= {"records:edit", "records:delete", "records:batch_file", "records:import_confirm"}
WRITE_URLS |= {"submissions:new", "submissions:queue", "submissions:collection_new"}
WRITE_URLS |= {"submissions:cancel", "submissions:delete", "submissions:retry"}
WRITE_URLS |= {"submissions:job_retry", "submissions:collection_edit"}
WRITE_URLS |= {"submissions:collection_delete"}


def url_names(patterns=None, namespace=None):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue
            yield from url_names(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}:{pattern.name}" if namespace else pattern.name


@pytest.fixture
def scenario(owner, team, sandbox):
    image = SimpleUploadedFile("a.jpg", jpeg_bytes())
    client_for(owner).post("/records/new/", {"image": image, "product_id": "p-1"})
    record = Record.objects.get()
    submission = submission_create(
        team=team, user=owner, records=[record], service="generic_tags", options={}
    )
    history = {
        "export": Export.objects.create(team=team, created_by=owner, format="csv"),
        "saved_view": SavedView.objects.create(team=team, owner=owner, name="v", shared=True),
    }
    history["batch"] = UploadBatch.objects.create(team=team, created_by=owner, kind="files")
    history["collection"] = Collection.objects.create(team=team, name="c", collection_id="c-1")
    return {"record": record, "submission": submission, **history, **team_objects(team, owner)}


def team_objects(team, owner):
    """The team's people, token, invitation and audit trail, with names an
    outsider's pages must never show."""
    member = make_user(f"member-{MARK}@example.com", team=team)
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    invitation = invitation_create(
        team=team, actor=owner.memberships.get(), email=f"invitee-{MARK}@example.com", role="member"
    )
    audit_record(team=team, user=owner, action="export.downloaded", target=f"export-{MARK}")
    return {"team": team, "member": member.memberships.get(), "invitation": invitation}


def object_urls(scenario):
    return {name: reverse(name, kwargs=make(scenario)) for name, make in OBJECT_URLS.items()}


def test_every_url_pattern_is_covered():
    covered = set(OBJECT_URLS) | TEAM_URLS | PUBLIC_URLS | STAFF_URLS
    assert set(url_names()) == covered


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_outsider_gets_404_on_every_object_url(scenario, outsider, method):
    client = client_for(outsider)
    for name, url in object_urls(scenario).items():
        response = getattr(client, method)(url)
        assert response.status_code == 404, f"{method.upper()} {name}"


def test_lists_never_show_another_teams_records(scenario, outsider):
    response = client_for(outsider).get(reverse("records:list"))
    assert list(response.context["records"]) == []
    assert b"p-1" not in response.content


def test_anonymous_visitors_are_sent_to_log_in(scenario):
    urls = list(object_urls(scenario).values()) + [reverse(name) for name in TEAM_URLS]
    for url in urls:
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("accounts:login")), url


def test_a_viewer_gets_403_on_every_write(scenario, viewer):
    client = client_for(viewer)
    urls = object_urls(scenario) | {name: reverse(name) for name in TEAM_URLS}
    for name in WRITE_URLS:
        response = client.post(urls[name], {"service": "generic_tags", "token": "x" * 20})
        assert response.status_code == 403, name
    assert Record.objects.count() == 1


# --- Every method, every role (issue 4) ------------------------------------------------

OTHER_METHODS = ["put", "patch", "delete"]


def team_state(team):
    """What a foreign or forbidden request must leave exactly as it was."""
    return (
        sorted(Membership.objects.filter(team=team).values_list("pk", "role")),
        list(Credential.objects.filter(team=team).values_list("ciphertext", flat=True)),
        Invitation.objects.filter(team=team).count(),
        Record.objects.filter(team=team).count(),
    )


def test_other_methods_never_succeed_for_an_outsider(scenario, outsider):
    client = client_for(outsider)
    for name, url in object_urls(scenario).items():
        for method in OTHER_METHODS:
            response = getattr(client, method)(url)
            assert response.status_code in (404, 405), f"{method.upper()} {name}"


def test_anonymous_posts_are_sent_to_log_in(scenario):
    before = team_state(scenario["team"])
    urls = list(object_urls(scenario).values()) + [reverse(name) for name in TEAM_URLS]
    for url in urls:
        response = Client().post(url, {"role": "viewer", "email": "x@example.com"})
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("accounts:login")), url
    assert team_state(scenario["team"]) == before


def test_team_pages_never_show_another_teams_ids(scenario, outsider):
    """Every team page, as an outsider: no name, e-mail or object link of the
    other team appears (the outsider's own team is what those pages show)."""
    client = client_for(outsider)
    foreign_links = list(object_urls(scenario).values())
    for name in sorted(TEAM_URLS):
        response = client.get(reverse(name))
        assert response.status_code in (200, 405), name
        body = response.content.decode()
        assert MARK not in body, name
        assert scenario["team"].name not in body, name
        assert not [link for link in foreign_links if f'"{link}"' in body], name


def test_an_outsider_posting_to_team_urls_changes_nothing_here(scenario, outsider):
    before = team_state(scenario["team"])
    client = client_for(outsider)
    for name in sorted(TEAM_URLS):
        client.post(reverse(name), {"email": f"x-{MARK}@example.com", "role": "owner", "name": "t"})
    assert team_state(scenario["team"]) == before
    assert not AuditEvent.objects.filter(team=scenario["team"], actor=outsider).exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_member_gets_403_on_every_manage_url(scenario, method):
    before = team_state(scenario["team"])
    client = client_for(scenario["member"].user)
    urls = object_urls(scenario) | {name: reverse(name) for name in TEAM_URLS}
    for name in sorted(MANAGE_URLS - (READABLE_BY_ALL if method == "get" else set())):
        response = getattr(client, method)(urls[name], {"role": "owner", "email": "x@example.com"})
        assert response.status_code == 403, f"{method.upper()} {name}"
    assert team_state(scenario["team"]) == before


def test_a_viewer_changes_nothing_through_any_write_url(scenario, viewer):
    before = team_state(scenario["team"])
    client = client_for(viewer)
    urls = object_urls(scenario) | {name: reverse(name) for name in TEAM_URLS}
    for name in sorted(WRITE_URLS):
        response = client.post(urls[name], {"role": "owner", "email": "x@example.com"})
        assert response.status_code == 403, name
    assert team_state(scenario["team"]) == before
