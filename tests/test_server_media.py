"""Study server, what participants can see: opaque media tokens, their headers, security headers, and a leak scan.

The scan records every response of a whole session of each design (HTML, JS, CSS,
JSON, media headers) and looks for anything that would tell a participant which clip is
which: variant names, item ids, the batch id, file names, file hashes, the answer key's
field names, and (outside deceitfulness) class names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.batches import SERVER_ACTIONS
from support.batches import server_batch
from support.server import ParticipantActions
from support.server import make_test_app

from stimuli.batch import load_batch
from study_server.extensions import db
from study_server.models import MediaToken

STUDIES = [
    (
        "ind",
        "indistinguishability",
        {"trials": 5, "practice_trials": 1, "sensitivity_share": 0.4, "control_share": 0.2, "slowdown": 2.0},
    ),
    ("dec", "deceitfulness", {"trials": 3, "practice_trials": 1}),
    ("nat", "naturalness", {"trials": 6, "practice_trials": 1}),
]


class RecordingClient(FlaskClient):
    """A test client that keeps every response (path, status, headers, body)."""

    log: list[tuple[str, int, dict[str, str], bytes]]

    def open(self, *args: Any, **kwargs: Any) -> Any:
        r = super().open(*args, **kwargs)
        body = r.get_data()  # buffered, so the file behind a media response can be closed now
        r.close()
        self.log.append(
            (
                r.request.path + ("?" + r.request.query_string.decode() if r.request.query_string else ""),
                r.status_code,
                dict(r.headers),
                body,
            )
        )
        return r


@pytest.fixture
def app(tmp_path):
    app = make_test_app(tmp_path / "study.sqlite3", STUDIES)
    app.test_client_class = RecordingClient
    return app


def new_client(app) -> RecordingClient:
    c = app.test_client()
    c.log = []
    return c


def file_bytes(app, url: str) -> bytes:
    with app.app_context():
        mt = db.session.get(MediaToken, url.rsplit("/", 1)[1])
        stim = mt.stimulus
        return (Path(stim.batch.root) / (stim.video_path if mt.kind == "video" else stim.poster_path)).read_bytes()


# ---- media -------------------------------------------------------------------------------------
def test_media_is_served_by_token_with_neutral_headers_and_ranges(app):
    pa = ParticipantActions(new_client(app), "ind").join(PROLIFIC_PID="media")
    s = pa.state()
    full = pa.client.get(s["video"])
    assert full.status_code == 200 and full.mimetype == "video/mp4"
    assert full.get_data() == file_bytes(app, s["video"])
    h = full.headers
    assert "Content-Disposition" not in h and "Last-Modified" not in h
    assert h["Accept-Ranges"] == "bytes"
    assert "private" in h["Cache-Control"] and "public" not in h["Cache-Control"]
    assert h["X-Content-Type-Options"] == "nosniff" and h["Referrer-Policy"] == "no-referrer"
    etag = h["ETag"].strip('"')
    assert etag not in hashlib.sha256(full.get_data()).hexdigest()  # not the file's hash, nor a part of it
    part = pa.client.get(s["video"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.get_data() == full.get_data()[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(full.get_data())}"
    assert pa.client.get(s["video"], headers={"If-None-Match": h["ETag"]}).status_code == 304
    poster = pa.client.get(s["poster"])
    assert poster.status_code == 200 and poster.mimetype == "image/png" and "Content-Disposition" not in poster.headers


def test_a_token_works_only_for_its_participant_and_until_answered(app):
    alice = ParticipantActions(new_client(app), "ind").join(PROLIFIC_PID="alice")
    bob = ParticipantActions(new_client(app), "ind").join(PROLIFIC_PID="bob")
    s = alice.state()
    assert bob.client.get(s["video"]).status_code == 404
    assert new_client(app).get(s["video"]).status_code == 404
    assert alice.client.get("/m/not-a-token").status_code == 404
    # the same stimulus for two participants: different URLs, different ETags
    b = bob.state()
    assert s["video"] != b["video"]
    assert alice.client.get(s["video"]).headers["ETag"] != bob.client.get(b["video"]).headers["ETag"]
    alice.answer(s, "unchanged")
    assert alice.client.get(s["video"]).status_code == 404  # revoked once answered
    assert alice.client.get(s["next"]["video"]).status_code == 200  # the preloaded next one still works


# ---- headers ---------------------------------------------------------------------------------------
def test_security_headers_and_cookie_flags(app, tmp_path):
    pa = ParticipantActions(new_client(app), "dec")
    r = pa.enter(PROLIFIC_PID="headers")
    set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie
    page = pa.client.get("/s/dec/consent")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'self' https://www.mturk.com" in csp
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.get_data(as_text=True)  # no inline script anywhere: only src=
    secure = make_test_app(tmp_path / "secure.sqlite3", STUDIES, config={"SESSION_COOKIE_SECURE": True})
    r = secure.test_client().get("/s/dec", query_string={"PROLIFIC_PID": "x"})
    assert "Secure" in r.headers["Set-Cookie"]


def test_pages_have_accessible_structure(app):
    pa = ParticipantActions(new_client(app), "nat").join(PROLIFIC_PID="a11y")
    html = pa.client.get("/s/nat/trials").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert 'role="status" aria-live="polite"' in html and 'aria-labelledby="prompt"' in html
    assert re.search(r'<script src="/static/trial\.js" defer></script>', html)
    assert "<video" in html and "controls" not in html.split("<video", 1)[1].split(">", 1)[0]
    instructions = new_client(app)
    ParticipantActions(instructions, "nat").enter(PROLIFIC_PID="keys")
    p = ParticipantActions(instructions, "nat")
    p.consent()
    p.about()
    text = instructions.get("/s/nat/instructions").get_data(as_text=True)
    assert "1 left, 2 right, 3 can&#39;t tell" in text and "arrow keys" in text
    css = instructions.get("/static/study.css").get_data(as_text=True)
    assert ":focus-visible" in css


# ---- the leak scan ---------------------------------------------------------------------------------
def forbidden(deceitfulness: bool) -> list[re.Pattern[str]]:
    batch = load_batch(server_batch())
    words = [
        "smart",
        "l2",
        "l2-acc",
        "l2-bone",
        "perceivability",
        "sensitivity",
        "attacked",
        "control",
        "variant",
        "variants",
        "true_label",
        "attacked_label",
        "label_order",
        "cell",
        "kind",
        "item_id",
        "stimulus",
        "composite",
        "manifest",
        "batch",
        "synthetic",
        "stgcn",
        "sha256",
    ]
    literals = [batch.batch_id, ".mp4", ".png", ".npy", "_vs_", "original|", "|original", "items/"]
    for it in batch.items:
        literals.append(it.id)
    for _, ref in batch.files():
        literals += [ref.sha256, ref.sha256[:16], ref.path]
    if not deceitfulness:  # the two class names are shown by design in deceitfulness only
        words += list(SERVER_ACTIONS) + ["jog"]
    return [re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])", re.I) for w in words] + [
        re.compile(re.escape(x), re.I) for x in literals
    ]


@pytest.mark.parametrize("slug", ["dec", "nat", "ind"])
def test_nothing_a_participant_sees_reveals_the_stimulus(app, slug):
    client = new_client(app)
    pa = ParticipantActions(client, slug)
    pa.join(PROLIFIC_PID=f"scan-{slug}")
    client.get("/static/trial.js")
    client.get("/static/study.css")
    client.get(f"/s/{slug}/trials")
    while (s := pa.state())["status"] == "trial":
        for url in (s["video"], s["poster"], *(s["next"] or {}).values()):
            client.get(url)
            client.get(url, headers={"Range": "bytes=0-1"})
        pa.answer(s, s["options"][-1]["value"])
    client.get(f"/s/{slug}/done")
    client.get("/m/expired-or-unknown")
    patterns = forbidden(slug == "dec")
    media = 0
    for path, status, headers, body in client.log:
        is_media = path.startswith("/m/") and status in (200, 206, 304)
        media += is_media
        text = " ".join(f"{k}: {v}" for k, v in headers.items() if k != "Set-Cookie")
        if not is_media:
            text += "\n" + body.decode("utf-8")
        hits = [p.pattern for p in patterns if p.search(text)]
        assert not hits, f"{path} ({status}) shows {hits}"
    assert media >= 4 * 6
    # the class names do appear where they must: deceitfulness options
    if slug == "dec":
        assert any(b"jog" in body for path, _, _, body in client.log if path.endswith("/api/state"))


def test_no_size_or_header_of_the_media_tells_the_conditions_apart(app):
    """Live: a session of each design; every video and poster served for one item and one kind of medium (single or
    side by side) has the same Content-Length and the same headers, whatever its condition; a range request too."""
    from study_server.models import Attempt
    from study_server.models import Stimulus
    from study_server.models import Trial

    # (ETag: from the token, random per participant and trial; Date and Expires: the time of the request)
    seen: dict[tuple[str, str, str], dict[str, tuple[int, tuple]]] = {}
    for slug in ("ind", "nat", "dec"):
        for k in range(3):
            p = ParticipantActions(new_client(app), slug).join(PROLIFIC_PID=f"leak-{slug}-{k}")
            for _ in range(40):
                s = p.state()
                if s["status"] != "trial":
                    break
                with app.app_context():
                    att = db.session.execute(db.select(Attempt).where(Attempt.ref == s["attempt"])).scalar_one()
                    stim = db.session.get(Stimulus, db.session.get(Trial, att.trial_pk).stimulus_pk)
                    item, cond = stim.item_id, stim.key
                layout = "pair" if "|" in cond else "single"
                for kind in ("video", "poster"):
                    full = p.client.get(s[kind])
                    part = p.client.get(s[kind], headers={"Range": "bytes=0-99"})
                    heads = tuple(
                        sorted((h, v) for h, v in full.headers.items() if h not in ("ETag", "Date", "Expires"))
                    )
                    rng = tuple(sorted((h, v) for h, v in part.headers.items() if h not in ("ETag", "Date", "Expires")))
                    seen.setdefault((item, layout, kind), {})[cond] = (
                        int(full.headers["Content-Length"]),
                        (heads, rng),
                    )
                assert p.answer(s, s["options"][0]["value"]).status_code == 200
    groups = [g for g in seen.values() if len(g) > 1]
    assert len(groups) >= 6  # several items seen under several conditions each
    for g in groups:
        diff = {h for v in g.values() for h in v[1][0] + v[1][1]} - set.intersection(
            *({h for h in v[1][0] + v[1][1]} for v in g.values())
        )
        assert len({v for v in g.values()}) == 1, ({c: v[0] for c, v in g.items()}, diff)  # one size, one header set
