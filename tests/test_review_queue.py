"""The reviewer's working day on the review page (issue 18 item 3, issue 19 item 2), over HTTP
against the real app and database (SQLite and PostgreSQL): sign-in lands on the work queue, most
urgent first, its filters, taking and releasing; "submission 2 of 3", every submission linked,
the newer-submission warning and "what changed"; the determination form and where
determinations show. The queue, assignment, changes and determinations are service.requests'
and service.determinations'; these tests check the page calls them and words what they say."""

import datetime
import re
from html import unescape

import pytest
from sqlalchemy import func, select, update

from service.review.store import ReviewSession
from service.store.determinations import Determination
from service.store.keys import create_key
from service.store.requests import Request as RequestRow
from service.store.tables import utc_now
from test_review_page import auth, csrf_of, sign_in

DAY = datetime.timedelta(days=1)


def words_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</section>", start)]


def submit(client, key, case, external_id, **changes):
    case = {**case, "external_id": external_id, **changes}
    response = client.post("/v1/evaluations", json=case, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def signed_in(client, reviewer_key):
    assert sign_in(client, reviewer_key, target="").headers["location"] == "/review/queue"  # where sign-in lands
    return client


@pytest.fixture
def three_submissions(client, intake_key, full_case):
    """REQ-THREE, submitted three times: NRS 4 (not met), 5 (not met), then 7 with the spine
    surgery question unanswered (met; insufficient)."""
    results = []
    for nrs in (4, 5, 7):
        full_case["low_back_pain"]["nrs"] = nrs
        if nrs == 7:
            del full_case["surgery"]["spine_surgery_indicated"]
        results.append(submit(client, intake_key, full_case, "REQ-THREE"))
    return results


@pytest.fixture
def queue_of_five(client, intake_key, full_case, database):
    """Five requests: two expedited, three standard, one of them overdue."""
    made = {}
    for external_id, priority in (("std-a", "standard"), ("EXP-B", "expedited"), ("std-c", "standard"),
                                  ("exp-d", "expedited"), ("LATE-E", "standard")):
        made[external_id] = submit(client, intake_key, full_case, external_id, priority=priority)
    with database.transaction() as session:
        session.execute(update(RequestRow).where(RequestRow.external_id == "LATE-E")
                        .values(due_at=utc_now() - DAY - datetime.timedelta(minutes=5), received_at=utc_now() - 8 * DAY))
    return made


def queue_refs(page) -> list[str]:
    return re.findall(r'<td data-label="Request"><a href="/review/evaluations/[^"]+">([^<]+)<', page.text)


# --- the queue ------------------------------------------------------------------------------------


def test_the_queue_lists_open_requests_most_urgent_first_with_their_clock(signed_in, queue_of_five):
    page = signed_in.get("/review/queue")

    assert page.status_code == 200
    assert queue_refs(page) == ["LATE-E", "EXP-B", "exp-d", "std-a", "std-c"]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", page.text, re.S)[1:]
    late = words_of(rows[0])
    assert re.search(r"⚠ Overdue by 1 day due \d+ \w{3} \d{4}, [\d:]{8} UTC", late)  # a word and a symbol
    assert 'class="row-overdue"' in rows[0]
    assert re.search(r"(2 days 2[23] h|3 days) left", words_of(rows[1])) and "» Expedited" in words_of(rows[1])
    assert re.search(r"(6 days 2[23] h|7 days) left", words_of(rows[3])) and "Standard" in words_of(rows[3])
    for row in map(words_of, rows):
        assert "Restorative neurostimulation" in row  # the policy
        assert "All criteria met" in row  # the latest findings
        assert "None yet" in row  # no determination
        assert "No one Take" in row  # nobody has it, and it can be taken


@pytest.mark.parametrize("query, expected", [
    ({"priority": "expedited"}, ["EXP-B", "exp-d"]),
    ({"overdue": "true"}, ["LATE-E"]),
    ({"external_id": "Exp"}, ["EXP-B", "exp-d"]),  # a prefix, whatever the case
    ({"external_id": "std-"}, ["std-a", "std-c"]),
    ({"external_id": "nothing"}, []),
    ({"policy": "isass-2023-restorative-neurostimulation", "priority": "standard"}, ["LATE-E", "std-a", "std-c"]),
    ({"policy": "no-such-policy"}, ["LATE-E", "EXP-B", "exp-d", "std-a", "std-c"]),  # an unknown choice: any
])
def test_the_queue_filters(signed_in, queue_of_five, query, expected):
    page = signed_in.get("/review/queue", params=query)

    assert page.status_code == 200
    assert queue_refs(page) == expected
    for name, value in query.items():
        if name == "external_id":
            assert f'name="external_id" type="search" value="{value}"' in page.text  # the form keeps the choice


def test_taking_and_releasing_a_request_from_the_queue(signed_in, database, reviewer_key, queue_of_five, client):
    request_id = queue_of_five["std-a"]["request_id"]
    page = signed_in.get("/review/queue", params={"assigned": "none"})
    back = re.search(r'name="back" value="([^"]+)"', page.text).group(1)
    assert unescape(back) == "/review/queue?assigned=none"

    taken = signed_in.post(f"/review/requests/{request_id}/assignee",
                           data={"csrf_token": csrf_of(page), "assignee": "me", "back": unescape(back)}, follow_redirects=False)

    assert taken.status_code == 303
    assert taken.headers["location"] == f"/review/queue?assigned=none&done=taken&request={request_id}"
    after = signed_in.get(taken.headers["location"])
    assert re.search(r'role="status" id="done" tabindex="-1" autofocus>You took std-a\.', after.text)
    assert "std-a" not in queue_refs(after)  # no longer unassigned
    mine = signed_in.get("/review/queue", params={"assigned": "me"})
    assert queue_refs(mine) == ["std-a"]
    assert "You Release std-a" in words_of(mine.text)

    # Another reviewer cannot take it while it is held: the page says who has it.
    _, other_key = create_key(database, "reviewer", label="Second reviewer")
    other = client.__class__(client.app)
    assert sign_in(other, other_key).status_code == 303
    refused = other.post(f"/review/requests/{request_id}/assignee",
                         data={"csrf_token": csrf_of(other.get("/review/queue")), "assignee": "me", "back": "/review/queue"})
    assert refused.status_code == 409
    assert "This request is assigned to reviewer tests" in words_of(refused.text)

    released = signed_in.post(f"/review/requests/{request_id}/assignee",
                              data={"csrf_token": csrf_of(mine), "assignee": "", "back": "/review/queue?assigned=me"})
    assert "You released std-a." in released.text
    assert queue_refs(released) == []


def test_a_take_without_the_session_token_changes_nothing(signed_in, database, queue_of_five):
    request_id = queue_of_five["std-a"]["request_id"]

    response = signed_in.post(f"/review/requests/{request_id}/assignee", data={"csrf_token": "forged", "assignee": "me"})

    assert response.status_code == 403
    with database.session() as session:
        assert session.scalar(select(RequestRow.assigned_key_id).where(RequestRow.id == request_id)) is None


def test_a_bad_queue_link_falls_back_to_the_first_page(signed_in, queue_of_five):
    page = signed_in.get("/review/queue", params={"cursor": "not-a-cursor", "assigned": "bogus"})

    assert page.status_code == 200
    assert "That page link is not valid any more" in page.text
    assert len(queue_refs(page)) == 5  # an unknown "assigned" is "any"


# --- submissions of a request ---------------------------------------------------------------------


def test_the_summary_says_which_submission_it_is_and_links_every_one(signed_in, three_submissions):
    first, second, third = three_submissions

    latest = signed_in.get(f"/review/evaluations/{third['evaluation_id']}").text
    older = signed_in.get(f"/review/evaluations/{second['evaluation_id']}").text

    assert "Submission 3 of 3" in words_of(latest)
    box = words_of(section(latest, "request-heading"))
    assert "Submission 3 (this one)" in box and "Submission 2 , evaluated" in box and "Submission 1 , evaluated" in box
    for earlier in (first, second):
        assert f'href="/review/evaluations/{earlier["evaluation_id"]}"' in section(latest, "request-heading")
    assert f'href="/review/evaluations/{third["evaluation_id"]}/changes">What changed in submission 3 since submission 2' in latest
    assert "A newer submission of this request exists" not in latest

    assert "Submission 2 of 3" in words_of(older)
    assert re.search(r"A newer submission of this request exists This is submission 2 of 3\. Read submission 3, evaluated", words_of(older))
    assert 'id="decide"' not in older  # decisions are taken on the latest submission only
    assert f'href="/review/evaluations/{third["evaluation_id"]}#decide">submission 3</a>' in older


def test_what_changed_shows_fields_before_and_after_and_statuses_that_moved(signed_in, three_submissions):
    page = signed_in.get(f"/review/evaluations/{three_submissions[2]['evaluation_id']}/changes")
    text = words_of(page.text)

    assert page.status_code == 200
    assert "What changed REQ-THREE, submission 3 of 3" in text
    assert "Back pain NRS low_back_pain.nrs 5 7" in text
    assert "Spine surgery indicated surgery.spine_surgery_indicated no not documented" in text
    assert "ISASS-RN-04 Severe pain ✗ Not met ✓ Met" in text
    assert "ISASS-RN-10 Not a candidate for spine surgery ✓ Met ? Insufficient information" in text
    assert "Trial-population flags whose status moved 0 None moved." in text
    first = words_of(signed_in.get(f"/review/evaluations/{three_submissions[0]['evaluation_id']}/changes").text)
    assert "This is the first submission of its request: there is nothing before it to compare with." in first
    assert signed_in.get("/review/evaluations/no-such/changes").status_code == 404


# --- determinations -------------------------------------------------------------------------------


def decide(client, evaluation, **fields):
    page = client.get(f"/review/evaluations/{evaluation['evaluation_id']}")
    data = {"csrf_token": csrf_of(page), "evaluation_id": evaluation["evaluation_id"], **fields}
    return client.post(f"/review/requests/{evaluation['request_id']}/determinations", data=data, follow_redirects=False)


def test_the_form_starts_with_the_unmet_criteria_ticked_and_no_outcome(signed_in, client, intake_key, full_case):
    full_case["low_back_pain"]["nrs"] = 5
    evaluation = submit(client, intake_key, full_case, "DENY-1")

    form = section(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}").text, "determinations-heading")

    assert re.findall(r'name="criteria" value="([^"]+)" id="[^"]+" checked', form) == ["ISASS-RN-04"]
    assert 'name="outcome"' in form and " checked>" not in re.sub(r'name="criteria"[^>]*>', "", form)
    assert "I have reviewed the clinical documentation" in form
    assert "Recorded as reviewer tests" in words_of(form)
    for outcome in ("approved", "partially_approved", "denied", "pended_for_information", "referred_to_physician_reviewer"):
        assert f'value="{outcome}"' in form


def test_a_denial_without_a_reason_comes_back_with_one_to_start_from(signed_in, database, client, intake_key, full_case):
    full_case["low_back_pain"]["nrs"] = 5
    evaluation = submit(client, intake_key, full_case, "DENY-2")

    response = decide(signed_in, evaluation, outcome="denied", criteria="ISASS-RN-04", attestation="yes", reason="")

    assert response.status_code == 422
    assert re.search(r'id="decide-errors" tabindex="-1" autofocus', response.text)
    assert "edit it, then record again" in response.text
    reason = unescape(re.search(r'<textarea id="reason"[^>]*>(.*?)</textarea>', response.text, re.S).group(1))
    assert reason.startswith(
        "ISASS-RN-04 Severe pain is not met. Requirement: Back pain NRS (0-10) of 6 or more. Documented: Back pain NRS 5. "
        "Source: Patient Selection Characteristics: Lorio M, Lewandrowski K-U")
    assert "; Candidate profile: Matis GK." in reason and not reason.endswith("..")
    assert 'value="denied" id="outcome-denied" checked' in response.text  # the choices are kept
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Determination)) == 0


def test_a_determination_is_recorded_and_shows_on_the_summary_printout_and_queue(signed_in, client, intake_key, full_case):
    full_case["low_back_pain"]["nrs"] = 5
    evaluation = submit(client, intake_key, full_case, "DENY-3")
    reason = "Back pain NRS 5 on 2 Oct 2026 is below the required 6 (ISASS 2023, patient selection)."

    response = decide(signed_in, evaluation, outcome="denied", criteria="ISASS-RN-04", attestation="yes", reason=reason)

    assert response.status_code == 303
    determination_id = re.fullmatch(rf"/review/evaluations/{evaluation['evaluation_id']}\?recorded=([0-9a-f-]+)",
                                    response.headers["location"]).group(1)
    summary = signed_in.get(response.headers["location"]).text
    listed = words_of(section(summary, "determinations-heading"))
    assert re.search(r"Your determination was recorded at [^.]+UTC\. Denied \d+ \w{3} \d{4}, [\d:]{8} UTC · reviewer tests · "
                     r"on submission 1 Rests on ISASS-RN-04\. " + re.escape(reason), listed)
    assert f'id="determination-{determination_id}"' in summary
    assert 'class="determination"' in summary and "screen-only" not in re.search(r'<div class="determination"[^>]*>', summary).group(0)
    queue = signed_in.get("/review/queue", params={"state": "all", "external_id": "DENY-3"})
    assert re.search(r"Denied by reviewer tests, (just now|\d+ min ago)", words_of(queue.text))
    assert "Decided" in words_of(queue.text)
    assert queue_refs(signed_in.get("/review/queue", params={"external_id": "DENY-3"})) == []  # closed: no longer open


def test_an_attestation_is_required_and_named_as_missing(signed_in, client, intake_key, full_case):
    evaluation = submit(client, intake_key, full_case, "ATTEST-1")

    response = decide(signed_in, evaluation, outcome="approved", reason="")

    assert response.status_code == 422
    errors = section(response.text, "determinations-heading")
    assert '<a href="#attestation">Attestation</a> (attestation): Must be true' in errors


def test_a_determination_on_a_submission_overtaken_by_a_newer_one_is_refused(signed_in, client, intake_key, full_case):
    first = submit(client, intake_key, full_case, "RACE-1")
    page = signed_in.get(f"/review/evaluations/{first['evaluation_id']}")
    submit(client, intake_key, full_case, "RACE-1")  # arrives while the reviewer reads the first

    response = signed_in.post(f"/review/requests/{first['request_id']}/determinations", data={
        "csrf_token": csrf_of(page), "evaluation_id": first["evaluation_id"], "outcome": "approved", "attestation": "yes"})

    assert response.status_code == 409
    assert "A newer submission of this request arrived while you were reading this one" in response.text
    assert "A newer submission of this request exists" in response.text


def test_a_referral_to_a_physician_reviewer_keeps_the_request_open(signed_in, client, intake_key, full_case):
    evaluation = submit(client, intake_key, full_case, "REFER-1")

    response = decide(signed_in, evaluation, outcome="referred_to_physician_reviewer", attestation="yes",
                      reason="Age and imaging need a physician's judgment.")

    assert response.status_code == 303
    assert queue_refs(signed_in.get("/review/queue", params={"external_id": "REFER-1"})) == ["REFER-1"]
    assert "Referred to a physician reviewer" in signed_in.get(response.headers["location"]).text


def test_findings_never_word_an_outcome_outside_the_reviewers_determinations(signed_in, three_submissions):
    page = signed_in.get(f"/review/evaluations/{three_submissions[2]['evaluation_id']}").text
    findings = page[: page.index('id="determinations"')] + page[page.index('id="notes"') :]

    for word in ("approved", "denied", "not covered"):
        assert word not in words_of(findings).lower()


@pytest.mark.parametrize("path", ["assignee", "determinations"])
def test_a_request_form_address_opened_as_a_page_leads_to_the_latest_submission(signed_in, three_submissions, path):
    response = signed_in.get(f"/review/requests/{three_submissions[0]['request_id']}/{path}", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == f"/review/evaluations/{three_submissions[2]['evaluation_id']}"


def test_a_determination_filled_in_after_the_session_ended_comes_back_unrecorded(signed_in, database, reviewer_key,
                                                                                 client, intake_key, full_case):
    full_case["low_back_pain"]["nrs"] = 5
    evaluation = submit(client, intake_key, full_case, "LATE-DECISION")
    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}")
    with database.transaction() as session:
        session.execute(update(ReviewSession).values(expires_at=utc_now()))
    reason = "NRS 5 is below 6; the <b>pain diary</b> was not sent."

    ended = signed_in.post(f"/review/requests/{evaluation['request_id']}/determinations", data={
        "csrf_token": csrf_of(page), "evaluation_id": evaluation["evaluation_id"], "outcome": "denied",
        "criteria": ["ISASS-RN-04", "ISASS-RN-05"], "reason": reason, "attestation": "yes"})

    assert ended.status_code == 401
    assert "your determination has not been recorded" in ended.text
    for name, value in (("decision_outcome", "denied"), ("decision_criteria", "ISASS-RN-04"), ("decision_criteria", "ISASS-RN-05"),
                        ("decision_reason", "NRS 5 is below 6; the &lt;b&gt;pain diary&lt;/b&gt; was not sent.")):
        assert f'name="{name}" value="{value}"' in ended.text
    assert "Denied, resting on ISASS-RN-04, ISASS-RN-05" in words_of(ended.text)
    assert "decision_attestation" not in ended.text  # attested again after signing in, never carried

    form = signed_in.get("/review")
    fields = dict(re.findall(r'name="(decision_[a-z]+)" value="([^"]*)"', ended.text))
    back = signed_in.post("/review/sign-in", data={
        "key": reviewer_key, "csrf_token": csrf_of(form), "next": f"/review/evaluations/{evaluation['evaluation_id']}",
        **{name: unescape(value) for name, value in fields.items()}, "decision_criteria": ["ISASS-RN-04", "ISASS-RN-05"]},
        follow_redirects=False)

    assert back.status_code == 200 and "cc_review_session=" in back.headers["set-cookie"]
    decide_form = section(back.text, "determinations-heading")
    assert "You are signed in again. Your determination is below as you filled it in" in decide_form
    assert 'value="denied" id="outcome-denied" checked' in decide_form
    assert re.findall(r'name="criteria" value="([^"]+)" id="[^"]+" checked', decide_form) == ["ISASS-RN-04", "ISASS-RN-05"]
    assert f">{reason.replace('<', '&lt;').replace('>', '&gt;')}</textarea>" in decide_form
    assert 'id="attestation" checked' not in decide_form
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Determination)) == 0


def test_starting_the_reason_from_the_unmet_criteria_chooses_no_outcome(signed_in, client, intake_key, full_case):
    full_case["low_back_pain"]["nrs"] = 5
    evaluation = submit(client, intake_key, full_case, "START-1")

    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}", params={"start_reason": "1"})

    form = section(page.text, "determinations-heading")
    reason = unescape(re.search(r'<textarea id="reason"[^>]*>(.*?)</textarea>', form, re.S).group(1))
    assert reason.startswith("ISASS-RN-04 Severe pain is not met. Requirement: ")
    assert not re.search(r'name="outcome" value="[a-z_]+" id="[^"]+" checked', form)  # the reviewer decides
