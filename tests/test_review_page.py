"""The review page over HTTP (the real app and database, SQLite and PostgreSQL): sessions, CSRF,
the sign-in limit, search paging, and what the review summary shows. The browser tests
(test_review_browser.py) drive the same pages in Chromium."""

import datetime
import hashlib
import json
import re
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from service.app import create_app
from service.web.ratelimit import RateLimiter
from service.review import pages
from service.review.sessions import SIGN_IN_ATTEMPTS_PER_MINUTE, safe_next
from service.review.store import ReviewNote, ReviewSession
from service.store.evaluations import save_evaluation
from service.store.tables import as_utc
from service.store.keys import create_key, revoke_key

ROOT = Path(__file__).resolve().parent.parent
POLICY_ID = "isass-2023-restorative-neurostimulation"
CRITERIA = [f"ISASS-RN-{number:02d}" for number in range(1, 14)]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def auth(key):
    return {"X-API-Key": key}


def csrf_of(page) -> str:
    return CSRF.search(page.text).group(1)


def sign_in(client, key, target="/review/evaluations"):
    form = client.get("/review")
    return client.post(
        "/review/sign-in", data={"key": key, "csrf_token": csrf_of(form), "next": target}, follow_redirects=False
    )


def text_of(page) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", " ", page.text))


@pytest.fixture
def evaluation(client, intake_key, full_case):
    full_case["patient"]["bmi"] = 37.5  # TRIAL-BMI present
    full_case["low_back_pain"]["nrs"] = 5  # ISASS-RN-04 not met
    del full_case["surgery"]["spine_surgery_indicated"]  # ISASS-RN-10 insufficient
    return client.post("/v1/evaluations", json=full_case, headers=auth(intake_key)).json()


@pytest.fixture
def signed_in(client, reviewer_key):
    assert sign_in(client, reviewer_key).status_code == 303
    return client


# --- sessions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/review/evaluations", "/review/evaluations?external_id=INTAKE-2026-000123", "EVALUATION"])
def test_without_a_session_pages_redirect_to_sign_in_and_show_no_case_data(client, evaluation, path):
    path = path.replace("EVALUATION", f"/review/evaluations/{evaluation['evaluation_id']}")

    response = client.get(path, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/review?next=%2Freview%2Fevaluations")
    assert evaluation["external_id"] not in response.text
    assert "ISASS" not in response.text
    landing = client.get(response.headers["location"])
    assert landing.status_code == 200
    assert "Sign in" in landing.text and evaluation["external_id"] not in landing.text


def test_a_reviewer_key_signs_in_and_comes_back_to_the_page_asked_for(client, reviewer_key, evaluation):
    target = f"/review/evaluations/{evaluation['evaluation_id']}"
    denied = client.get(target, follow_redirects=False)

    form = client.get(denied.headers["location"])
    assert f'name="next" value="{target}"' in form.text
    response = client.post(
        "/review/sign-in", data={"key": reviewer_key, "csrf_token": csrf_of(form), "next": target}, follow_redirects=False
    )

    assert response.status_code == 303
    assert response.headers["location"] == target
    assert client.get(target).status_code == 200


def test_the_session_cookie_is_httponly_samesite_strict_scoped_and_expiring(client, reviewer_key):
    cookie = sign_in(client, reviewer_key).headers["set-cookie"]

    assert re.search(r"cc_review_session=[A-Za-z0-9_-]{43};", cookie)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/review" in cookie
    assert "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the HTTPS test


def test_the_session_cookie_is_secure_over_https(settings, evaluator, database, reviewer_key):
    with TestClient(create_app(settings, evaluator), base_url="https://testserver") as client:
        form = client.get("/review")
        assert "Secure" in form.headers["set-cookie"]
        response = sign_in(client, reviewer_key)
    assert "Secure" in response.headers["set-cookie"]


def test_only_a_hash_of_the_session_token_is_stored(client, database, reviewer_key):
    token = re.search(r"cc_review_session=([^;]+);", sign_in(client, reviewer_key).headers["set-cookie"]).group(1)

    with database.session() as session:
        stored = session.scalars(select(ReviewSession.token_sha256)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


def test_an_intake_key_cannot_sign_in(client, database, intake_key):
    response = sign_in(client, intake_key)

    assert response.status_code == 403
    assert "intake key" in response.text
    assert "cc_review_session=" not in response.headers.get("set-cookie", "")
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewSession)) == 0
    assert client.get("/review/evaluations", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("key", ["", "not a key", "cc_0123456789abcdef_" + "x" * 43])
def test_an_unknown_key_cannot_sign_in(client, key):
    response = sign_in(client, key)

    assert response.status_code == 401
    assert "was not accepted" in response.text
    assert "cc_review_session=" not in response.headers.get("set-cookie", "")


def test_sign_in_without_the_form_token_is_refused(client, reviewer_key):
    client.get("/review")
    for token in (None, "forged"):
        data = {"key": reviewer_key, **({"csrf_token": token} if token else {})}
        response = client.post("/review/sign-in", data=data, follow_redirects=False)
        assert response.status_code == 403
        assert "cc_review_session=" not in response.headers.get("set-cookie", "")


def test_sign_in_attempts_are_limited_per_address(client, reviewer_key):
    for _ in range(SIGN_IN_ATTEMPTS_PER_MINUTE):
        assert sign_in(client, "cc_0123456789abcdef_" + "x" * 43).status_code == 401

    refused = sign_in(client, reviewer_key)  # even the right key, once the address is over its limit

    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "cc_review_session=" not in refused.headers.get("set-cookie", "")


def test_the_sign_in_limit_keeps_a_bounded_number_of_addresses_without_forgetting_busy_ones():
    now = [0.0]
    limiter = RateLimiter(per_minute=6, clock=lambda: now[0], max_buckets=3)
    assert [limiter.retry_after("busy") for _ in range(7)] == [0] * 6 + [10]

    for address in ("a", "b", "c", "d", "e"):  # refill fully within a minute, so they may go
        limiter.retry_after(address)
        now[0] += 61
        assert limiter.retry_after("busy") == 0
        for _ in range(5):
            limiter.retry_after("busy")  # busy again: its bucket must stay
    assert len(limiter._buckets) <= 3
    assert limiter.retry_after("busy") == 10


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/review/evaluations/abc", "/review/evaluations/abc"),
        ("/review/evaluations?external_id=A%20B", "/review/evaluations?external_id=A%20B"),
        ("https://elsewhere.example/review/", "/review/queue"),
        ("//elsewhere.example/review/", "/review/queue"),
        ("/review//elsewhere.example", "/review/queue"),
        ("/review/\\elsewhere.example", "/review/queue"),
        ("/v1/evaluations", "/review/queue"),
        ("/review/a\r\nSet-Cookie: x=y", "/review/queue"),
        (None, "/review/queue"),
    ],
)
def test_after_sign_in_the_reviewer_only_goes_to_a_review_page(target, expected):
    assert safe_next(target) == expected


def test_sign_out_ends_the_session_for_good(client, database, reviewer_key):
    old_cookie = re.search(r"cc_review_session=([^;]+);", sign_in(client, reviewer_key).headers["set-cookie"]).group(1)
    page = client.get("/review/evaluations")

    refused = client.post("/review/sign-out", data={"csrf_token": "forged"}, follow_redirects=False)
    assert refused.status_code == 403
    response = client.post("/review/sign-out", data={"csrf_token": csrf_of(page)}, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/review?signed_out=1"
    assert 'cc_review_session=""' in response.headers["set-cookie"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewSession)) == 0
    client.cookies.set("cc_review_session", old_cookie, path="/review")  # a copy kept by someone
    assert client.get("/review/evaluations", follow_redirects=False).status_code == 303
    assert "You have signed out." in client.get("/review?signed_out=1").text


def test_a_revoked_key_loses_its_session(signed_in, database, reviewer_key):
    revoke_key(database, reviewer_key.split("_")[1])

    assert signed_in.get("/review/evaluations", follow_redirects=False).status_code == 303


def test_an_idle_or_old_session_expires(signed_in, database):
    assert signed_in.get("/review/evaluations").status_code == 200
    with database.transaction() as session:
        session.execute(update(ReviewSession).values(expires_at=datetime.datetime.now(datetime.UTC)))

    assert signed_in.get("/review/evaluations", follow_redirects=False).status_code == 303


def stored_expiry(database) -> datetime.datetime:
    """The session's expiry as stored, in UTC (SQLite hands it back without a zone)."""
    with database.session() as session:
        return as_utc(session.scalar(select(ReviewSession.expires_at)))


def test_use_restarts_the_idle_time(signed_in, database):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
    with database.transaction() as session:
        session.execute(update(ReviewSession).values(expires_at=soon))

    assert signed_in.get("/review/evaluations").status_code == 200

    assert stored_expiry(database) - datetime.datetime.now(datetime.UTC) > datetime.timedelta(minutes=29)


def test_use_restarts_the_idle_time_but_not_past_eight_hours(signed_in, database):
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=7, minutes=50)
    with database.transaction() as session:
        session.execute(update(ReviewSession).values(created_at=long_ago))

    assert signed_in.get("/review/evaluations").status_code == 200

    assert stored_expiry(database) - long_ago <= datetime.timedelta(hours=8, seconds=1)


def test_pages_carry_no_script_and_a_policy_that_forbids_outside_resources(signed_in, evaluation):
    for path in ("/review", "/review/evaluations?external_id=INTAKE-2026-000123", f"/review/evaluations/{evaluation['evaluation_id']}"):
        response = signed_in.get(path)
        assert response.status_code == 200
        assert "<script" not in response.text.lower()
        assert response.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        # Everything the page loads is its own: stylesheets and images by path on this server.
        for url in re.findall(r'<(?:link|img)[^>]+(?:href|src)="([^"]+)"', response.text):
            assert url.startswith("/review/"), url
    css = signed_in.get("/review/static/review.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@import" not in css.text and "url(" not in css.text
    assert "@media print" in css.text


# --- search -------------------------------------------------------------------------------------


def test_search_pages_newest_first(signed_in, database, intake_key, evaluator, full_case):
    key_id = intake_key.split("_")[1]
    full_case["external_id"] = "PAGED-1"
    ids = []
    for _ in range(pages.PAGE_SIZE + 5):
        result = evaluator.evaluate(full_case)
        save_evaluation(
            database, evaluation_id=result["evaluation_id"], external_id="PAGED-1", policy_id=POLICY_ID,
            policy_version="1.0.0", key_id=key_id, organization="default", case_json=json.dumps(full_case), result_json=json.dumps(result),
        )
        ids.append(result["evaluation_id"])
    newest_first = ids[::-1]

    first = signed_in.get("/review/evaluations", params={"external_id": "PAGED-1"})
    linked = re.findall(r'href="/review/evaluations/([0-9a-f-]{36})"', first.text)
    older = unescape(re.search(r'href="([^"]+)" rel="next"', first.text).group(1))
    second = signed_in.get(older)
    linked_second = re.findall(r'href="/review/evaluations/([0-9a-f-]{36})"', second.text)

    assert linked == newest_first[: pages.PAGE_SIZE]
    assert linked_second == newest_first[pages.PAGE_SIZE :]
    assert 'rel="next"' not in second.text
    assert "Newest evaluations" in second.text


def test_search_for_an_unknown_reference_says_so(signed_in):
    response = signed_in.get("/review/evaluations", params={"external_id": "NOTHING-HERE"})

    assert response.status_code == 200
    assert "No evaluation is stored for this intake reference" in response.text


@pytest.mark.parametrize("params", [{"external_id": "x" * 129}, {"external_id": ""}])
def test_search_with_a_bad_reference_says_what_is_wrong(signed_in, params):
    response = signed_in.get("/review/evaluations", params=params)

    assert response.status_code == 422
    assert "1 to 128 characters" in response.text


def test_a_tampered_page_link_falls_back_to_the_newest_page(signed_in, evaluation):
    response = signed_in.get("/review/evaluations", params={"external_id": evaluation["external_id"], "cursor": "bm90IGEgY3Vyc29y"})

    assert response.status_code == 200
    assert "not valid any more" in response.text
    assert evaluation["evaluation_id"] in response.text


# --- the review summary -------------------------------------------------------------------------


def test_the_summary_shows_every_criterion_in_order_with_symbol_and_word(signed_in, evaluation):
    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}")
    text = text_of(page)

    assert page.status_code == 200
    headings = re.findall(r'<h3 id="(ISASS-RN-\d\d)-heading"', page.text)
    assert headings == CRITERIA
    for criterion in evaluation["criteria"]:
        block = page.text[page.text.index(f'id="{criterion["id"]}"') :]
        block = block[: block.index("</article>")]
        symbol, word = {"met": ("✓", "Met"), "not_met": ("✗", "Not met"), "insufficient_information": ("?", "Insufficient information")}[criterion["status"]]
        heading = re.search(r"<h3 [^>]*>(.*?)</h3>", block, re.S).group(1)  # the status is in the heading
        assert " ".join(unescape(re.sub(r"<[^>]+>", "", heading)).split()) == f"{symbol} {word}: {criterion['id']} {criterion['title']}"
        assert f"<dd>{criterion['requirement']}</dd>" in unescape(block)
        assert criterion["reason"] in unescape(block)
        for citation in criterion["citations"]:
            assert citation["locator"] in block
    assert "Draft criteria: not yet confirmed by clinical review" in text
    assert evaluation["policy"]["review_note"] in text
    assert "they are not a coverage decision" in text
    assert "At least one criterion not met" in text
    assert '<a href="https://doi.org/10.14444/8525" rel="noopener noreferrer">isass-2023</a>' in page.text
    assert re.search(r"Spine surgery indicated\s*<code class=\"path\">surgery\.spine_surgery_indicated</code>", page.text)
    findings = " ".join(text.split()).split("Determinations A reviewer's decision")[0]  # the reviewer's form is theirs
    for word in ("approved", "denied", "not covered"):
        assert word not in findings.lower()


def test_flags_show_present_ones_first(signed_in, evaluation):
    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}")

    flag_ids = re.findall(r'<h3 id="(TRIAL-[A-Z-]+)-heading"', page.text)
    assert flag_ids[0] == "TRIAL-BMI"
    assert sorted(flag_ids) == sorted(f["id"] for f in evaluation["flags"])
    assert re.search(r'flags present:\s*<a href="#TRIAL-BMI">TRIAL-BMI</a>', page.text)


def test_fhir_sources_other_evidence_and_flags_present_are_shown_when_the_result_has_them(
    signed_in, database, intake_key, evaluator, full_case
):
    result = evaluator.evaluate(full_case)
    nrs = next(c for c in result["criteria"] if c["id"] == "ISASS-RN-04")
    nrs["evidence"][0]["source"] = {"reference": "Observation/pain-1", "date": "2026-10-02"}
    result["other_evidence"] = [
        {"field": "low_back_pain.eq5d_index", "label": "EQ-5D index", "value": 0.43},
        {"field": "diagnosis_codes", "label": "Diagnosis codes (ICD-10-CM)", "value": ["M54.50", "M62.85"]},
    ]
    result["summary"]["flags_present"] = ["TRIAL-AGE"]
    next(f for f in result["flags"] if f["id"] == "TRIAL-AGE")["status"] = "present"
    save_evaluation(
        database, evaluation_id=result["evaluation_id"], external_id=result["external_id"], policy_id=POLICY_ID,
        policy_version="1.0.0", key_id=intake_key.split("_")[1], organization="default", case_json="{}", result_json=json.dumps(result),
    )

    text = text_of(signed_in.get(f"/review/evaluations/{result['evaluation_id']}"))

    assert re.search(r"Back pain NRS\S*: 7 +from FHIR Observation/pain-1 , observed 2 Oct 2026", re.sub(r"\s+", " ", text))
    assert re.search(r"EQ-5D index\s+0\.43", text)
    assert re.search(r"Diagnosis codes \(ICD-10-CM\)\s+M54\.50, M62\.85", text)
    assert re.search(r"flags present:\s+TRIAL-AGE", text)


def test_answers_their_origin_conflicts_with_the_chart_and_values_not_read_are_shown(
    signed_in, database, intake_key, evaluator, full_case
):
    result = evaluator.evaluate(full_case)
    bmi = next(e for c in (*result["criteria"], *result["flags"]) for e in c["evidence"] if e["field"] == "patient.bmi")
    why = ("BMI: the questionnaire answer (29.5, QuestionnaireResponse/qr-1) and the chart (31.2, Observation/bmi-1, "
           "2026-10-02) differ; the answer's value 29.5 was used, being the later.")
    bmi["source"] = {"reference": "QuestionnaireResponse/qr-1", "date": "2026-12-05", "link_id": "patient.bmi",
                     "information_origin": "override", "author": "Practitioner/dr-1",
                     "conflict": {"answer": {"value": 29.5}, "chart": {"value": 31.2}, "used": "answer", "why": why}}
    result["intake_notes"] = [{"field": "low_back_pain.nrs", "reference": "Observation/nrs-later", "date": "2027-01-10",
                               "note": "Dated after the service date 2026-12-01: not read for Back pain NRS."}]
    save_evaluation(
        database, evaluation_id=result["evaluation_id"], external_id=result["external_id"], policy_id=POLICY_ID,
        policy_version="1.0.0", key_id=intake_key.split("_")[1], organization="default", case_json="{}",
        result_json=json.dumps(result),
    )

    text = re.sub(r"\s+", " ", text_of(signed_in.get(f"/review/evaluations/{result['evaluation_id']}")))

    assert "from FHIR QuestionnaireResponse/qr-1 item patient.bmi (override by Practitioner/dr-1 ), answered 5 Dec 2026" in text
    assert f"Answer and chart differ: {why}" in text
    assert "Not read from FHIR, and conflicts" in text
    assert "Back pain NRS: Dated after the service date 2026-12-01: not read for Back pain NRS. Observation/nrs-later" in text


def test_a_fhir_bundle_evaluation_shows_where_each_value_came_from(signed_in, intake_key):
    bundle = (ROOT / "examples" / "bundle.json").read_bytes()
    response = signed_in.post(
        "/v1/evaluations", content=bundle, headers={**auth(intake_key), "Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 201
    result = response.json()

    text = re.sub(r"\s+", " ", text_of(signed_in.get(f"/review/evaluations/{result['evaluation_id']}")))

    sourced = [item for c in result["criteria"] for item in c["evidence"] if "source" in item]
    assert sourced
    for item in sourced:
        assert f"from FHIR {item['source']['reference']}" in text
    assert "from FHIR Observation/pain-1 , observed 2 Oct 2026" in text
    codes = next(item for item in result["other_evidence"] if item["field"] == "diagnosis_codes")
    assert "from FHIR " + " , ".join(codes["source"].get("references") or [codes["source"]["reference"]]) in text


def test_an_unknown_evaluation_is_a_404_page(signed_in):
    response = signed_in.get("/review/evaluations/no-such-id")

    assert response.status_code == 404
    assert "No such evaluation" in response.text


# --- the note form ------------------------------------------------------------------------------


def test_a_note_from_the_form_is_stored_and_shown_as_text(signed_in, database, reviewer_key, evaluation):
    url = f"/review/evaluations/{evaluation['evaluation_id']}"
    page = signed_in.get(url)
    text = "<script>alert('x')</script> & <b>bold</b>\r\nsecond line"

    response = signed_in.post(f"{url}/notes", data={"csrf_token": csrf_of(page), "criterion": "ISASS-RN-04", "text": text}, follow_redirects=False)

    assert response.status_code == 303
    note_id = re.fullmatch(rf"{url}\?saved=(\d+)", response.headers["location"]).group(1)
    shown = signed_in.get(response.headers["location"])
    confirmation = re.search(r'<div class="note" id="note-(\d+)">\s*<p ([^>]*)>(.*?)</p>', shown.text, re.S)
    assert confirmation.group(1) == note_id  # confirmed at the note itself, where the page opens
    assert 'id="note-saved"' in confirmation.group(2) and 'role="status"' in confirmation.group(2)
    assert "autofocus" in confirmation.group(2)  # focus moves to it, so it is read out
    assert re.fullmatch(r"Note added on ISASS-RN-04 at \d+ \w{3} \d{4}, \d\d:\d\d:\d\d UTC\.", confirmation.group(3))
    assert 'id="note-saved"' not in signed_in.get(url).text  # only right after adding it
    assert "<script>alert" not in shown.text and "<b>bold</b>" not in shown.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;\nsecond line" in shown.text
    notes = signed_in.get(f"/v1/evaluations/{evaluation['evaluation_id']}/notes", headers=auth(reviewer_key)).json()["notes"]
    assert [(n["criterion"], n["text"], n["key_id"]) for n in notes] == [
        ("ISASS-RN-04", text.replace("\r\n", "\n"), reviewer_key.split("_")[1])
    ]
    block = shown.text[shown.text.index('id="ISASS-RN-04"') :]
    assert block.index("&lt;script&gt;") < block.index("</article>")  # shown with its criterion


def test_a_note_form_without_the_session_token_stores_nothing(signed_in, database, evaluation):
    url = f"/review/evaluations/{evaluation['evaluation_id']}/notes"

    for data in ({"criterion": "", "text": "forged"}, {"csrf_token": "forged", "criterion": "", "text": "forged"}):
        assert signed_in.post(url, data=data).status_code == 403
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewNote)) == 0


def test_a_bad_note_from_the_form_is_shown_again_with_the_problem(signed_in, database, evaluation):
    url = f"/review/evaluations/{evaluation['evaluation_id']}"
    page = signed_in.get(url)

    response = signed_in.post(f"{url}/notes", data={"csrf_token": csrf_of(page), "criterion": "ISASS-RN-77", "text": "keep <me>"})

    assert response.status_code == 422
    assert "The note was not added" in response.text
    errors = re.search(r'<div class="message message-error" ([^>]*)>(.*?)</div>', response.text, re.S)
    assert 'role="alert"' in errors.group(1) and "autofocus" in errors.group(1)  # focus moves to the message
    assert '<a href="#note-criterion">Applies to</a> (criterion): Not a criterion of this evaluation' in errors.group(2)
    assert ">keep &lt;me&gt;</textarea>" in response.text
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewNote)) == 0


def test_the_add_a_note_link_preselects_its_criterion(signed_in, evaluation):
    page = signed_in.get(f"/review/evaluations/{evaluation['evaluation_id']}", params={"note_on": "ISASS-RN-09"})

    assert '<option value="ISASS-RN-09" selected>' in page.text
    assert '<option value="" selected>' not in page.text
