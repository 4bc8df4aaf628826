"""What a nurse reviewer missed on the review page (issue 18, item 4), over HTTP against the real app
and database (SQLite and PostgreSQL): a note typed after the session ended, focus and
confirmation, reviewers' names, the printout's running header and paper, unknown flags in the
information to request, the requested service, evidence dates in words and old evidence, times to
the second. The browser tests (test_review_browser.py) drive the same pages in Chromium."""

import base64
import hashlib
import json
import re
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from service.review.store import ReviewNote, ReviewSession
from service.store.evaluations import save_evaluation
from service.store.keys import create_key
from service.store.tables import ApiKey
from test_review_page import auth, csrf_of, sign_in, text_of

ROOT = Path(__file__).resolve().parent.parent
POLICY_ID = "isass-2023-restorative-neurostimulation"


def words_of(page) -> str:
    return " ".join(text_of(page).split())


@pytest.fixture
def evaluation(client, intake_key, full_case):
    full_case["low_back_pain"]["nrs"] = 5  # ISASS-RN-04 not met
    del full_case["surgery"]["spine_surgery_indicated"]  # ISASS-RN-10 insufficient
    del full_case["patient"]["bmi"]  # TRIAL-BMI unknown
    return client.post("/v1/evaluations", json=full_case, headers=auth(intake_key)).json()


@pytest.fixture
def bundle_evaluation(client, intake_key):
    response = client.post(
        "/v1/evaluations",
        content=(ROOT / "examples" / "bundle.json").read_bytes(),
        headers={**auth(intake_key), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def signed_in(client, reviewer_key):
    assert sign_in(client, reviewer_key).status_code == 303
    return client


def note_count(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(ReviewNote))


def end_sessions(database) -> None:
    with database.transaction() as session:
        session.execute(update(ReviewSession).values(expires_at=func.now()))


# --- a note typed when the session had ended ---------------------------------------------------


def test_a_note_sent_after_the_session_ended_comes_back_in_the_sign_in_form(signed_in, database, evaluation):
    url = f"/review/evaluations/{evaluation['evaluation_id']}"
    token = csrf_of(signed_in.get(url))
    end_sessions(database)
    text = "Clinic called back <b>twice</b>.\nImaging on its way."

    response = signed_in.post(f"{url}/notes", data={"csrf_token": token, "criterion": "ISASS-RN-08", "text": text}, follow_redirects=False)

    assert response.status_code == 401
    assert "Method Not Allowed" not in response.text
    assert "Sign in to review" in response.text and "your note has not been added yet" in response.text
    assert f'name="note_evaluation" value="{evaluation["evaluation_id"]}"' in response.text
    assert 'name="note_criterion" value="ISASS-RN-08"' in response.text
    assert 'name="note_text" value="Clinic called back &lt;b&gt;twice&lt;/b&gt;.\nImaging on its way."' in response.text
    assert f'name="next" value="{url}"' in response.text
    assert evaluation["external_id"] not in response.text  # nothing of the case but the note just sent
    assert note_count(database) == 0


def pending_sign_in(client, key, evaluation_id, criterion="ISASS-RN-08", text="Kept through sign-in."):
    form = client.get("/review")
    return client.post(
        "/review/sign-in",
        data={
            "key": key, "csrf_token": csrf_of(form), "next": f"/review/evaluations/{evaluation_id}",
            "note_evaluation": evaluation_id, "note_criterion": criterion, "note_text": text,
        },
        follow_redirects=False,
    )


def test_signing_in_again_adds_the_kept_note_and_returns_to_the_review(client, database, reviewer_key, evaluation):
    response = pending_sign_in(client, reviewer_key, evaluation["evaluation_id"], text="Line one\r\nline two")

    assert response.status_code == 303
    note_id = re.fullmatch(rf"/review/evaluations/{evaluation['evaluation_id']}\?saved=(\d+)", response.headers["location"]).group(1)
    assert "cc_review_session=" in response.headers["set-cookie"]
    notes = client.get(f"/v1/evaluations/{evaluation['evaluation_id']}/notes", headers=auth(reviewer_key)).json()["notes"]
    assert [(n["id"], n["criterion"], n["text"], n["key_id"]) for n in notes] == [
        (int(note_id), "ISASS-RN-08", "Line one\nline two", reviewer_key.split("_")[1])
    ]
    page = client.get(response.headers["location"])
    assert re.search(r'id="note-saved" tabindex="-1" autofocus>Note added on ISASS-RN-08 at [^<]+</p>', page.text)


@pytest.mark.parametrize("key, status", [("cc_0123456789abcdef_" + "x" * 43, 401), ("INTAKE", 403)])
def test_a_refused_sign_in_keeps_the_note_and_stores_nothing(client, database, intake_key, evaluation, key, status):
    response = pending_sign_in(client, intake_key if key == "INTAKE" else key, evaluation["evaluation_id"])

    assert response.status_code == status
    assert 'name="note_text" value="Kept through sign-in."' in response.text
    assert "Sign in and add the note" in response.text
    assert note_count(database) == 0


def test_a_kept_note_that_is_not_acceptable_is_shown_on_the_review_with_the_problem(client, database, reviewer_key, evaluation):
    response = pending_sign_in(client, reviewer_key, evaluation["evaluation_id"], criterion="ISASS-RN-99", text="   ")

    assert response.status_code == 422
    assert "cc_review_session=" in response.headers["set-cookie"]  # signed in all the same
    assert "The note was not added" in response.text and "Not a criterion of this evaluation" in response.text
    assert note_count(database) == 0


def test_a_note_form_from_an_earlier_session_is_shown_again_with_the_note(signed_in, database, evaluation):
    url = f"/review/evaluations/{evaluation['evaluation_id']}"

    response = signed_in.post(f"{url}/notes", data={"csrf_token": "from-an-earlier-session", "criterion": "", "text": "keep me"})

    assert response.status_code == 403
    assert "This form was opened in an earlier session" in response.text
    assert ">keep me</textarea>" in response.text
    assert note_count(database) == 0


@pytest.mark.parametrize("path, target", [
    ("/review/evaluations/EVALUATION/notes", "/review/evaluations/EVALUATION#add-note"),
    ("/review/sign-in", "/review"),
    ("/review/sign-out", "/review"),
])
def test_a_form_address_opened_as_a_page_leads_to_a_page_never_to_json(client, evaluation, path, target):
    path, target = (p.replace("EVALUATION", evaluation["evaluation_id"]) for p in (path, target))

    response = client.get(path, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == target


# --- names, times, printout ------------------------------------------------------------------------


def test_notes_and_the_printout_name_the_reviewer_as_the_queue_does(signed_in, database, reviewer_key, evaluation):
    """A key's name for people (service.requests.people): its name, else its label, else its id."""
    unnamed_id, unnamed = create_key(database, "reviewer")
    signed_in.post(f"/v1/evaluations/{evaluation['evaluation_id']}/notes", json={"text": "Seen."}, headers=auth(reviewer_key))
    signed_in.post(f"/v1/evaluations/{evaluation['evaluation_id']}/notes", json={"text": "Also seen."}, headers=auth(unnamed))

    text = words_of(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}"))

    assert re.search(r"\d\d:\d\d:\d\d UTC · reviewer tests · whole evaluation Seen\.", text)  # the key's label
    assert re.search(rf"\d\d:\d\d:\d\d UTC · key {unnamed_id} · whole evaluation Also seen\.", text)
    assert "Printed by reviewer tests from the page as loaded on" in text
    assert "Reviewed by reviewer tests" in text
    assert "Signed in as reviewer tests" in text


@pytest.mark.skipif(not hasattr(ApiKey, "name"), reason="the keys table has no name column yet (keys create --name, organizations work)")
def test_notes_and_the_printout_name_the_reviewer_by_the_keys_name(signed_in, database, reviewer_key, evaluation):
    with database.transaction() as session:
        session.execute(update(ApiKey).where(ApiKey.id == reviewer_key.split("_")[1]).values(name="J. Smith, RN"))
    signed_in.post(f"/v1/evaluations/{evaluation['evaluation_id']}/notes", json={"text": "Seen."}, headers=auth(reviewer_key))

    text = words_of(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}"))

    assert re.search(r"UTC · J\. Smith, RN · whole evaluation Seen\.", text)
    assert "Printed by J. Smith, RN" in text and "Reviewed by J. Smith, RN" in text
    assert "key " + reviewer_key.split("_")[1] not in text


def inline_style(page) -> str:
    return re.search(r"<style>(.*?)</style>", page.text, re.S).group(1)


def test_the_printout_carries_the_reference_and_time_on_every_page_allowed_by_its_hash_alone(signed_in, evaluation):
    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}")
    style = inline_style(page)

    assert style.startswith("@page { size: letter; ")  # US Letter unless A4 is chosen
    assert f'@top-left {{ content: "{evaluation["external_id"]} \\00b7  Review summary"; }}' in style
    assert re.search(r'@top-right \{ content: "Printed \d+ \w{3} \d{4}, \d\d:\d\d:\d\d UTC"; \}', style)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'self' 'sha256-{digest}';" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert inline_style(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}", params={"paper": "a4"})).startswith("@page { size: A4; ")
    assert inline_style(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}", params={"paper": "tabloid"})).startswith("@page { size: letter; ")


def test_a_reference_cannot_break_out_of_the_printouts_style(signed_in, database, intake_key, evaluator, full_case):
    full_case["external_id"] = 'X"; } body { display: none } </style><script>alert(1)</script>'
    result = evaluator.evaluate(full_case)
    save_evaluation(
        database, evaluation_id=result["evaluation_id"], external_id=result["external_id"], policy_id=POLICY_ID,
        policy_version="1.0.0", key_id=intake_key.split("_")[1], organization="default", case_json="{}",
        result_json=json.dumps(result),
    )

    page = signed_in.get(f"/review/evaluations/{result['evaluation_id']}")
    style = inline_style(page)

    assert "<" not in style and "}" not in style.split('content: "', 1)[1].split('"', 1)[0]
    assert '\\000022\\00003b \\00007d body' in style  # the quote, semicolon and brace as CSS escapes
    assert page.text.count("<style>") == 1 and "<script>" not in page.text


def test_times_read_to_the_second_with_their_zone(signed_in, evaluation):
    text = words_of(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}"))

    evaluated = evaluation["evaluated_at"]  # 2026-12-05T14:42:30Z
    day = int(evaluated[8:10])
    assert re.search(rf"Evaluated {day} \w{{3}} {evaluated[:4]}, {evaluated[11:19]} UTC", text)


def test_search_rows_link_with_distinct_words_and_relative_times(signed_in, evaluation, bundle_evaluation):
    page = signed_in.get("/review/evaluations", params={"external_id": evaluation["external_id"]})

    links = [" ".join(unescape(re.sub(r"<[^>]+>", "", link)).split()) for link in re.findall(r'<a href="/review/evaluations/[0-9a-f-]{36}">(.*?)</a>', page.text, re.S)]
    assert len(links) == 2 and len(set(links)) == 2
    for link, evaluated in zip(links, (bundle_evaluation, evaluation)):
        assert link.startswith(f"Evaluation {evaluated['evaluation_id'][:8]} of ")
    times = re.findall(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)<span class="visually-hidden"> \(([^)]+)\)</span></time>', page.text)
    assert [t[0] for t in times] == [bundle_evaluation["evaluated_at"], evaluation["evaluated_at"]]
    assert all(title == hidden and re.fullmatch(r"just now|\d+ min ago", shown) for _, title, shown, hidden in times)


# --- what the summary says ---------------------------------------------------------------------------


def test_unknown_flags_are_said_and_their_fields_are_in_the_information_to_request(signed_in, evaluation):
    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}")
    text = words_of(page)

    assert "Trial-population flags present: none." in text
    assert "Flags unknown (not documented): TRIAL-BMI : their fields are in the information to request." in text
    assert "Information to request: 2 fields ." in text
    todo = page.text[page.text.index('<ul class="todo">') :]
    todo = todo[: todo.index("</ul>")]
    items = [" ".join(unescape(re.sub(r"<[^>]+>", "", item)).split()) for item in re.findall(r"<li>(.*?)</li>", todo, re.S)]
    assert items == [
        "Spine surgery indicated surgery.spine_surgery_indicated for ISASS-RN-10",
        "BMI patient.bmi for TRIAL-BMI",
    ]
    assert "todo-box" not in page.text and 'type="checkbox"' not in todo  # plain list items, nothing that looks tickable


def test_the_requested_service_evidence_dates_and_old_evidence_of_a_fhir_bundle(signed_in, bundle_evaluation):
    text = words_of(signed_in.get(f"/review/evaluations/{bundle_evaluation['evaluation_id']}"))

    assert "Requested service CPT 64568" in text
    assert "from FHIR Patient/pat-1 , born 15 Jun 1974 " in text  # a birth date is never old
    assert "from FHIR Observation/pain-1 , observed 2 Oct 2026 " in text
    assert "from FHIR QuestionnaireResponse/odi-1 , answered 2 Oct 2026 " in text
    assert ("from FHIR Procedure/pt-1 , performed 1 Jun 2025 Old: more than 12 months before the service date") in text
    assert text.count("Old: more than 12 months") == text.count("Procedure/pt-1 , performed") + text.count("Condition/lbp-1 , recorded 1 Oct 2024")


def test_a_case_without_a_requested_service_shows_none(signed_in, evaluation):
    assert "Requested service" not in text_of(signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}"))
