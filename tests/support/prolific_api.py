"""A local Prolific: the documented REST endpoints the client uses, and the participant's side.

Prolific cannot be reached from here, so the tests run the real client against this server,
which follows docs.prolific.com/api-reference: token authentication; ``POST /api/v1/studies/``
(a draft, refused below the minimum hourly rate), ``GET /api/v1/studies/`` and ``/studies/{id}/``,
``POST /studies/{id}/transition/`` (PUBLISH, PAUSE, START); ``GET /studies/{id}/submissions/``
(paged through ``_links.next``); ``POST /submissions/{id}/transition/`` (APPROVE, idempotent;
REJECT needs a message of 100 characters and a category), ``/submissions/{id}/request-return/``,
``GET /submissions/{id}/`` (with its paid ``bonus_payments`` in cents);
``POST /submissions/bonus-payments/`` (CSV of submission or participant ids and amounts; unknown
ids are a 400) and ``POST /bulk-bonus-payments/{id}/pay/`` (not idempotent: every call pays).
Errors answer ``{"error": {"status", "title", "detail"}}``.

The participant's side: ``GET /take/{study}?pid=...`` starts a submission and sends the
participant to the study URL with the placeholders filled in; ``GET /submissions/complete?cc=``
is where they hand the code back (their submission is then AWAITING REVIEW).

Faults for the tests: :meth:`LocalProlific.fail` makes the next matching call answer 503 before
doing anything (``refuse``) or do it and answer too late for the client (``lose``);
:meth:`stop` / :meth:`start` take the server off the network and back.
"""

from __future__ import annotations

import secrets
import threading
import time
from decimal import Decimal
from typing import Any

from flask import Flask
from flask import jsonify
from flask import redirect
from flask import request
from werkzeug.serving import make_server

__all__ = ["LocalProlific", "TOKEN"]

TOKEN = "test-token-123"
MIN_CENTS_PER_HOUR = {"GBP": 600, "USD": 800}


def _error(status: int, detail: Any, title: str = "Bad request") -> Any:
    return jsonify(
        {"error": {"status": status, "error_code": 140100 + status, "title": title, "detail": detail}}
    ), status


class LocalProlific:
    """The server and its state: ``studies``, ``submissions``, ``bulks``, and per-submission call counts."""

    def __init__(self, lose_s: float = 1.5):
        self.studies: dict[str, dict[str, Any]] = {}
        self.submissions: dict[str, dict[str, Any]] = {}
        self.bulks: dict[str, dict[str, Any]] = {}
        self.approve_calls: dict[str, int] = {}
        self.return_calls: dict[str, int] = {}
        self.pay_calls: dict[str, int] = {}
        self.faults: list[tuple[str, str, str]] = []
        self.lose_s = lose_s
        self.page_size = 2
        self.app = self._build()
        self.port = 0
        self._server: Any = None
        self.start()

    # ---- running ----
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, path_part: str, mode: str = "refuse") -> None:
        """The next ``method`` call whose path contains ``path_part``: ``refuse`` (503) or ``lose`` its answer."""
        self.faults.append((method, path_part, mode))

    def _fault(self) -> str | None:
        for i, (method, part, mode) in enumerate(self.faults):
            if request.method == method and part in request.path:
                del self.faults[i]
                return mode
        return None

    # ---- the participant's side, for tests ----
    def submissions_of(self, study_id: str) -> list[dict[str, Any]]:
        return [s for s in self.submissions.values() if s["study_id"] == study_id]

    def take_url(self, study_id: str, pid: str) -> str:
        return f"{self.url}/take/{study_id}?pid={pid}"

    # ---- the app ----
    def _build(self) -> Flask:  # noqa: C901 - one small route per documented endpoint
        app = Flask(__name__)
        me = self

        @app.before_request
        def gate() -> Any:
            if request.path.startswith("/api/"):
                if request.headers.get("Authorization") != f"Token {TOKEN}":
                    return _error(401, "Invalid token.", "Unauthorized")
            mode = me._fault()
            if mode == "refuse":
                return _error(503, "Service temporarily unavailable.", "Service unavailable")
            request.environ["lose"] = mode == "lose"
            return None

        @app.after_request
        def late(response: Any) -> Any:
            if request.environ.get("lose"):
                time.sleep(me.lose_s)  # done, but the client has given up waiting
            return response

        @app.post("/api/v1/studies/")
        def create_study() -> Any:
            body = request.get_json(force=True)
            missing = [
                f
                for f in (
                    "name",
                    "description",
                    "external_study_url",
                    "completion_codes",
                    "total_available_places",
                    "estimated_completion_time",
                    "reward",
                )
                if body.get(f) in (None, "", [])
            ]
            if missing:
                return _error(400, {f: ["This field is required."] for f in missing})
            currency = body.get("currency", "GBP")
            per_hour = body["reward"] * 60 / body["estimated_completion_time"]
            if per_hour < MIN_CENTS_PER_HOUR.get(currency, 600):
                return _error(400, {"reward": ["Reward per hour is below the minimum."]})
            for code in body["completion_codes"]:
                if not code.get("code") or not code.get("code_type"):
                    return _error(400, {"completion_codes": ["Each code needs a code and a code_type."]})
            sid = secrets.token_hex(12)
            self.studies[sid] = {**body, "id": sid, "status": "UNPUBLISHED", "places_taken": 0}
            return jsonify(self.studies[sid]), 201

        @app.get("/api/v1/studies/")
        def list_studies() -> Any:
            return jsonify({"results": list(self.studies.values())})

        @app.get("/api/v1/studies/<sid>/")
        def get_study(sid: str) -> Any:
            if sid not in self.studies:
                return _error(404, "Not found.", "Not found")
            return jsonify(self.studies[sid])

        @app.post("/api/v1/studies/<sid>/transition/")
        def transition_study(sid: str) -> Any:
            study = self.studies.get(sid)
            if study is None:
                return _error(404, "Not found.", "Not found")
            action = request.get_json(force=True).get("action")
            moves = {("PUBLISH", "UNPUBLISHED"): "ACTIVE", ("PAUSE", "ACTIVE"): "PAUSED", ("START", "PAUSED"): "ACTIVE"}
            to = moves.get((action, study["status"]))
            if to is None:
                return _error(400, f"Cannot {action} a study that is {study['status']}.")
            study["status"] = to
            return jsonify({"id": sid, "status": to})

        @app.get("/api/v1/studies/<sid>/submissions/")
        def study_submissions(sid: str) -> Any:
            rows = self.submissions_of(sid)
            page = int(request.args.get("page", 1))
            chunk = rows[(page - 1) * self.page_size : page * self.page_size]
            more = page * self.page_size < len(rows)
            nxt = {"href": f"{self.url}/api/v1/studies/{sid}/submissions/?page={page + 1}"} if more else None
            public = [{k: v for k, v in s.items() if k != "bonus_payments"} for s in chunk]
            return jsonify({"results": public, "_links": {"next": nxt}, "meta": {"count": len(rows)}})

        @app.get("/api/v1/submissions/<sub>/")
        def get_submission(sub: str) -> Any:
            if sub not in self.submissions:
                return _error(404, "Not found.", "Not found")
            return jsonify(self.submissions[sub])

        @app.post("/api/v1/submissions/<sub>/transition/")
        def transition_submission(sub: str) -> Any:
            s = self.submissions.get(sub)
            if s is None:
                return _error(404, "Not found.", "Not found")
            body = request.get_json(force=True)
            action = body.get("action")
            if action == "APPROVE":
                self.approve_calls[sub] = self.approve_calls.get(sub, 0) + 1
                if s["status"] == "APPROVED":
                    return jsonify(s)  # idempotent: the second request is ignored
                if s["status"] != "AWAITING REVIEW":
                    return _error(400, f"Cannot approve a submission that is {s['status']}.")
                s["status"] = "APPROVED"
                return jsonify(s)
            if action == "REJECT":
                if len(body.get("message") or "") < 100 or not body.get("rejection_category"):
                    return _error(400, {"message": ["A message of at least 100 characters and a category."]})
                s["status"] = "REJECTED"
                return jsonify(s)
            return _error(400, {"action": [f"{action!r} is not a valid choice."]})

        @app.post("/api/v1/submissions/<sub>/request-return/")
        def request_return(sub: str) -> Any:
            s = self.submissions.get(sub)
            if s is None:
                return _error(404, "Not found.", "Not found")
            reasons = request.get_json(force=True).get("request_return_reasons")
            if not reasons or not all(isinstance(r, str) and r for r in reasons):
                return _error(400, {"request_return_reasons": ["This field is required."]})
            self.return_calls[sub] = self.return_calls.get(sub, 0) + 1
            s["return_requested"], s["return_reasons"] = "2026-12-05T00:00:00Z", reasons
            return jsonify(
                {
                    "id": sub,
                    "status": s["status"],
                    "participant": s["participant_id"],
                    "return_requested": s["return_requested"],
                }
            )

        @app.post("/api/v1/submissions/bonus-payments/")
        def set_up_bonus() -> Any:
            body = request.get_json(force=True)
            study_id, lines = body.get("study_id"), (body.get("csv_bonuses") or "").strip().splitlines()
            if study_id not in self.studies or not lines:
                return _error(400, {"study_id": ["A study and at least one bonus."]})
            mine = self.submissions_of(study_id)
            by_id = {s["id"]: s for s in mine} | {s["participant_id"]: s for s in mine}
            parsed, wrong = [], []
            for line in lines:
                who, _, amount = line.partition(",")
                if who not in by_id:
                    wrong.append(who)
                else:
                    parsed.append((by_id[who]["id"], Decimal(amount)))
            if wrong:
                return _error(400, f"These ids did not take part in the study: {', '.join(wrong)}")
            bid = secrets.token_hex(12)
            total = sum(a for _, a in parsed)
            self.bulks[bid] = {"id": bid, "study": study_id, "lines": parsed, "amount": float(total * 100)}
            return jsonify(
                {
                    "id": bid,
                    "study": study_id,
                    "amount": float(total * 100),
                    "fees": 0.0,
                    "total_amount": float(total * 100),
                    "vat": 0.0,
                }
            ), 201

        @app.post("/api/v1/bulk-bonus-payments/<bid>/pay/")
        def pay_bonus(bid: str) -> Any:
            bulk = self.bulks.get(bid)
            if bulk is None:
                return _error(404, "Not found.", "Not found")
            for sub, amount in bulk["lines"]:  # not idempotent: every call pays
                self.submissions[sub]["bonus_payments"].append(int(amount * 100))
                self.pay_calls[sub] = self.pay_calls.get(sub, 0) + 1
            return jsonify(f"Bulk bonus payment with ID {bid} is being processed asynchronously."), 202

        # ---- the participant's side ----
        @app.get("/take/<sid>")
        def take(sid: str) -> Any:
            study = self.studies[sid]
            if study["status"] != "ACTIVE":
                return f"The study is {study['status']}.", 409
            pid = request.args["pid"]
            sub = secrets.token_hex(12)
            self.submissions[sub] = {
                "id": sub,
                "participant_id": pid,
                "study_id": sid,
                "status": "ACTIVE",
                "started_at": "now",
                "study_code": None,
                "bonus_payments": [],
                "return_requested": None,
            }
            url = (
                study["external_study_url"]
                .replace("{{%PROLIFIC_PID%}}", pid)
                .replace("{{%STUDY_ID%}}", sid)
                .replace("{{%SESSION_ID%}}", sub)
            )
            rv = redirect(url)
            rv.set_cookie("pid", pid)
            return rv

        @app.get("/submissions/complete")
        def complete() -> Any:
            code, pid = request.args.get("cc"), request.cookies.get("pid")
            for s in self.submissions.values():
                codes = [c["code"] for c in self.studies[s["study_id"]]["completion_codes"]]
                if s["participant_id"] == pid and s["status"] == "ACTIVE" and code in codes:
                    s["status"], s["study_code"] = "AWAITING REVIEW", code
                    return f"<h1>Submission complete</h1><p>Code {code} received.</p>"
            return "<h1>No active submission for this code</h1>", 400

        return app
