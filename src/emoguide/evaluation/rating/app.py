"""The rating study's web app: blinded item pages, autosave, viewing log, review, admin dashboard.

`create_app(corpus_root)` builds a FastAPI app over `<corpus>/ratings.sqlite` (through RatingStore
only). What the browser gets is blinded by construction: the app only ever calls store methods that
return blinded views (ItemView, RatingState, dashboard); it never reads the unblinding table, so no
model id or condition name can reach HTML, JSON, headers, clip names or URLs. Positions in URLs
(/item/3) are the rater's own order. Every text from the LLM or the transcript is rendered by
Jinja2 with autoescape on (never `|safe`), and the Content-Security-Policy forbids inline script,
so an injected tag is both escaped and, were it not, inert.

Rater identity comes from the session cookie only; every position is checked against the
rater's own assignments (the store raises PermissionError otherwise -> 403). A rating is
acknowledged (the "saved" the rater sees comes from the server's reply) only after the store
committed its transaction.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations
# (Request, ...) at runtime, and they are imported inside create_app (fastapi is imported lazily).
import asyncio
import ipaddress
import math
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from emoguide.errors import require

PKG_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PKG_DIR / "templates"
STATIC_DIR = PKG_DIR / "static"
HTMX_PATH = STATIC_DIR / "vendor" / "htmx.min.js"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
MEDIA_TYPES = {".mp4": "video/mp4", ".m4a": "audio/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg"}
CHOICE_LABELS = {"bachelor": "Bachelor's", "master": "Master's", "phd": "PhD", "cbt": "CBT (cognitive behavioural)",
                 "yes": "Yes", "no": "No"}
FLAG_LABELS = {"harmful": "Harmful", "off_topic": "Off-topic", "not_a_reply": "Not a reply"}
MAX_VIEW_SECONDS = 6 * 3600.0  # one viewing report; the page reports every 30 s


def check_vendor() -> None:
    """htmx is fetched at setup time (not committed); without it the pages do not work."""
    if not HTMX_PATH.is_file():
        raise FileNotFoundError(f"{HTMX_PATH} is missing: run python scripts/fetch_htmx.py")


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every response, no-store on everything but /static.

    (Pure ASGI rather than BaseHTTPMiddleware so ranged clip responses stream untouched.)
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += SECURITY_HEADERS
                headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _client_key(request) -> str:
    host = request.client.host if request.client else "unknown"
    try:  # one IPv6 client can hold a whole /64: count it as one
        addr = ipaddress.ip_address(host)
        if addr.version == 6 and not addr.is_loopback:
            return str(ipaddress.ip_network(f"{host}/64", strict=False))
    except ValueError:
        pass
    return host


def _short_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def create_app(corpus_root: Path, *, login_delay_s: float = 0.5, login_delay_max_s: float = 30.0):
    """The FastAPI app of the study in `corpus_root` (FileNotFoundError when there is none).

    login_delay_s / login_delay_max_s: the failed-login slowdown (delay = base * 2**(failures-1)).
    """
    require("fastapi", "rating")
    import jinja2
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from emoguide.evaluation.rating import auth
    from emoguide.evaluation.rating.background import BACKGROUND_FIELDS
    from emoguide.evaluation.rating.store import FLAG_KINDS, RatingStore

    check_vendor()
    store = RatingStore.open(Path(corpus_root))
    study = store.study()

    def current_token_hash(kind: str, rater_id: str | None) -> str | None:
        # Reads the backend's columns directly (raters.token_hash, meta.admin_token_hash): the
        # store has no method for "the token hash valid now" yet.
        conn = store.connection()
        if kind == "admin":
            row = conn.execute("SELECT value FROM meta WHERE key = 'admin_token_hash'").fetchone()
        else:
            row = conn.execute("SELECT token_hash FROM raters WHERE rater_id = ?", (rater_id,)).fetchone()
        return None if row is None else row[0]

    sessions = auth.SessionStore(store.connection, current_token_hash=current_token_hash)
    throttle = auth.LoginThrottle(store.connection, base_delay_s=login_delay_s, max_delay_s=login_delay_max_s)
    login_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    clip_cache: dict[str, frozenset[str]] = {}

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # every template, whatever its name: untrusted text is always escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _short_time

    app = FastAPI(title="emoguide rating study", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.state.store = store
    app.state.sessions = sessions
    app.state.throttle = throttle

    # ------------------------------------------------------------------ rendering
    def render(request: Request, template: str, status_code: int = 200, session=None, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            study=study,
            notice=study.research_notice,
            session=session,
            csrf=session.csrf if session is not None else None,
            **ctx,
        )
        return HTMLResponse(html, status_code=status_code)

    def is_htmx(request: Request) -> bool:
        return request.headers.get("hx-request") == "true"

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if is_htmx(request) or request.url.path.startswith("/api/") or request.url.path.startswith("/clip/"):
            return PlainTextResponse(message, status_code=exc.status_code, headers=getattr(exc, "headers", None))
        return render(request, "error.html", exc.status_code, status=exc.status_code, message=message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        # FastAPI's default echoes the input back as JSON; a short plain message is enough here
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "request" for e in exc.errors())
        message = f"bad request: {fields or 'invalid input'}"
        if is_htmx(request) or request.url.path.startswith("/api/"):
            return PlainTextResponse(message, status_code=400)
        return render(request, "error.html", 400, status=400, message=message)

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, exc: PermissionError):
        return PlainTextResponse("not yours", status_code=403)

    # ------------------------------------------------------------------ sessions
    def current_session(request: Request):
        return sessions.get(request.cookies.get(auth.SESSION_COOKIE))

    def rater_session(request: Request):
        s = current_session(request)
        if s is None:
            raise HTTPException(401, "Not signed in: open the invite link you were sent.")
        if s.kind != "rater":
            raise HTTPException(403, "This page is for raters; the admin account does not rate.")
        return s

    def admin_session(request: Request):
        s = current_session(request)
        if s is None or s.kind != "admin":
            raise HTTPException(403, "The admin pages need the admin link.")
        return s

    async def csrf_token_of(request: Request) -> str | None:
        given = request.headers.get(auth.CSRF_HEADER)
        if given:
            return given
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded") or ctype.startswith("multipart/form-data"):
            value = (await request.form()).get(auth.CSRF_FIELD)
            return value if isinstance(value, str) else None
        return None

    async def rater_post(request: Request):
        s = await run_in_threadpool(rater_session, request)
        if not s.csrf_ok(await csrf_token_of(request)):
            raise HTTPException(403, "Missing or wrong CSRF token: reload the page.")
        return s

    async def admin_post(request: Request):
        s = await run_in_threadpool(admin_session, request)
        if not s.csrf_ok(await csrf_token_of(request)):
            raise HTTPException(403, "Missing or wrong CSRF token: reload the page.")
        return s

    def set_session_cookie(request: Request, response: Response, raw: str) -> None:
        response.set_cookie(
            auth.SESSION_COOKIE, raw, max_age=int(auth.SESSION_TTL_S), path="/", httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )

    async def login(request: Request, token: str, kind: str) -> Response:
        """Shared by the rater and admin links: throttled lookup, new session, cookie, forward page.

        The answer is a small page that forwards to / (meta refresh), not a 303: a SameSite=Strict
        cookie set during a navigation that started on another site (the invite e-mail) is not sent
        on the redirect that follows, but is on a navigation the page itself starts.
        """
        client = _client_key(request)
        async with login_locks[client]:  # one attempt at a time per client: parallel guessing gains nothing
            delay = await run_in_threadpool(throttle.delay_for, client)
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == "rater":
                rater_id = await run_in_threadpool(store.rater_for_token, token)
                ok = rater_id is not None
            else:
                rater_id, ok = None, await run_in_threadpool(store.is_admin_token, token)
            if not ok:
                await run_in_threadpool(throttle.record_failure, client)
                raise HTTPException(403, "This link is not valid (wrong, old or mistyped). Ask the study admin for a new one.")
            await run_in_threadpool(throttle.clear, client)
            old = await run_in_threadpool(current_session, request)
            if old is not None:
                await run_in_threadpool(sessions.delete_hash, old.session_hash)
            raw, session = await run_in_threadpool(sessions.create, kind, rater_id, token)
        target = "/" if kind == "rater" else "/admin"
        response = render(request, "signed_in.html", session=None, target=target, kind=kind)
        set_session_cookie(request, response, raw)
        return response

    @app.get("/r/{token}")
    async def rater_login(token: str, request: Request):
        return await login(request, token, "rater")

    @app.get("/admin/login/{token}")
    async def admin_login(token: str, request: Request):
        return await login(request, token, "admin")

    @app.post("/logout")
    async def logout(request: Request):
        s = await run_in_threadpool(current_session, request)
        if s is None:
            raise HTTPException(401, "Not signed in.")
        if not s.csrf_ok(await csrf_token_of(request)):
            raise HTTPException(403, "Missing or wrong CSRF token: reload the page.")
        await run_in_threadpool(sessions.delete_hash, s.session_hash)
        response = render(request, "signed_out.html")
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ rater pages
    def rater_name(rater_id: str) -> str:
        for r in store.raters():
            if r.rater_id == rater_id:
                return r.name
        return rater_id

    def needs_background(rater_id: str) -> bool:
        return store.background(rater_id) is None

    def progress_ctx(rater_id: str) -> dict[str, int]:
        done, total = store.progress(rater_id)
        return {"done": done, "total": total}

    @app.get("/")
    def home(request: Request, s=Depends(rater_session)):
        if needs_background(s.rater_id):
            return RedirectResponse("/questionnaire", status_code=303)
        nxt = store.next_position(s.rater_id)
        if nxt is None:
            return render(request, "done.html", session=s, name=rater_name(s.rater_id), **progress_ctx(s.rater_id))
        return RedirectResponse(f"/item/{nxt}", status_code=303)

    @app.get("/questionnaire")
    def questionnaire(request: Request, s=Depends(rater_session)):
        answers = store.background(s.rater_id) or {}
        return render(request, "questionnaire.html", session=s, fields=BACKGROUND_FIELDS, choice_labels=CHOICE_LABELS,
                      answers={k: "" if v is None else str(v) for k, v in answers.items()}, error=None,
                      name=rater_name(s.rater_id))

    @app.post("/questionnaire")
    async def questionnaire_save(request: Request, s=Depends(rater_post)):
        form = await request.form()
        names = {f["name"] for f in BACKGROUND_FIELDS}
        answers = {k: str(v) for k, v in form.items() if k in names}
        try:
            await run_in_threadpool(store.save_background, s.rater_id, answers)
        except ValueError as exc:
            return render(request, "questionnaire.html", 400, session=s, fields=BACKGROUND_FIELDS, choice_labels=CHOICE_LABELS,
                          answers=answers, error=str(exc), name=await run_in_threadpool(rater_name, s.rater_id))
        return RedirectResponse("/", status_code=303)

    def own_positions(rater_id: str) -> list:
        return store.assignments(rater_id)

    def criterion_ctx(position: int, state) -> dict[str, Any]:
        return {"position": position, "state": state, "criteria": study.criteria}

    @app.get("/item/{position}")
    def item_page(position: int, request: Request, s=Depends(rater_session)):
        if needs_background(s.rater_id):
            return RedirectResponse("/questionnaire", status_code=303)
        assignments = own_positions(s.rater_id)
        order = [a.position for a in assignments]
        if position not in order:
            raise HTTPException(404, "No such item in your list.")
        index = order.index(position)
        item = store.item(assignments[index].item_id)
        state = store.rating_state(s.rater_id, position)
        next_url = f"/item/{order[index + 1]}" if index + 1 < len(order) else "/"
        prev_url = f"/item/{order[index - 1]}" if index > 0 else None
        return render(
            request, "item.html", session=s, item=item, n=index + 1, n_items=len(order), next_url=next_url,
            prev_url=prev_url, flag_kinds=FLAG_KINDS, flag_labels=FLAG_LABELS, media_type=clip_media_type(item.clip_name),
            name=rater_name(s.rater_id), **criterion_ctx(position, state), **progress_ctx(s.rater_id),
        )

    def clip_media_type(clip_name: str | None) -> str | None:
        if not clip_name:
            return None
        return MEDIA_TYPES.get(Path(clip_name).suffix.lower())

    @app.get("/review")
    def review(request: Request, s=Depends(rater_session)):
        if needs_background(s.rater_id):
            return RedirectResponse("/questionnaire", status_code=303)
        rows = []
        n_of = {}
        for i, a in enumerate(own_positions(s.rater_id), start=1):
            n_of[a.position] = i
            rows.append({"n": i, "position": a.position, "state": store.rating_state(s.rater_id, a.position)})
        edits = [{**e, "n": n_of.get(int(e["position"]))} for e in store.edits(s.rater_id)]
        return render(request, "review.html", session=s, rows=rows, edits=edits, criteria=study.criteria,
                      flag_labels=FLAG_LABELS, name=rater_name(s.rater_id), **progress_ctx(s.rater_id))

    # ------------------------------------------------------------------ autosave endpoints
    def _int(value: Any, what: str) -> int:
        try:
            return int(str(value))
        except (TypeError, ValueError):
            raise HTTPException(400, f"{what} must be a whole number") from None

    def fragment(template: str, session, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(study=study, session=session, csrf=session.csrf, **ctx)
        return HTMLResponse(html)

    @app.post("/api/score")
    async def api_score(request: Request, s=Depends(rater_post)):
        form = await request.form()
        position = _int(form.get("position"), "position")
        criterion = str(form.get("criterion") or "")
        raw = str(form.get("score") or "").strip()
        score = None if raw == "" else _int(raw, "score")

        def save():
            if needs_background(s.rater_id):
                raise HTTPException(403, "Fill in the questionnaire first.")
            state = store.save_score(s.rater_id, position, criterion, score)  # committed when it returns
            return state, progress_ctx(s.rater_id)

        try:
            state, prog = await run_in_threadpool(save)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        crit = next(c for c in study.criteria if c.name == criterion)
        return fragment("_score_saved.html", s, c=crit, position=position, state=state, saved_at=state.updated_at,
                        what=crit.title, **prog)

    @app.post("/api/note")
    async def api_note(request: Request, s=Depends(rater_post)):
        form = await request.form()
        position = _int(form.get("position"), "position")
        comment = str(form.get("comment") or "")
        if len(comment) > 20000:
            raise HTTPException(400, "comment is too long (20000 characters at most)")
        flags = [str(f) for f in form.getlist("flags")]

        def save():
            if needs_background(s.rater_id):
                raise HTTPException(403, "Fill in the questionnaire first.")
            return store.save_note(s.rater_id, position, comment, flags)

        try:
            state = await run_in_threadpool(save)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return fragment("_note_saved.html", s, state=state, saved_at=state.updated_at, what="Comment and flags")

    @app.post("/api/view")
    async def api_view(request: Request, s=Depends(rater_post)):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "body must be a JSON object")
        position = _int(body.get("position"), "position")
        try:
            seconds = float(body.get("seconds") or 0.0)
            fraction = body.get("watched_fraction")
            fraction = None if fraction is None else float(fraction)
            seeks, plays = int(body.get("seeks") or 0), int(body.get("plays") or 0)
        except (TypeError, ValueError):
            raise HTTPException(400, "seconds, watched_fraction, seeks and plays must be numbers") from None
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_VIEW_SECONDS:
            raise HTTPException(400, f"seconds must be between 0 and {MAX_VIEW_SECONDS:.0f}")
        if fraction is not None and (not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0):
            raise HTTPException(400, "watched_fraction must be between 0 and 1")
        if not (0 <= seeks <= 100000 and 0 <= plays <= 100000):
            raise HTTPException(400, "seeks and plays must be between 0 and 100000")
        try:
            await run_in_threadpool(store.log_view, s.rater_id, position, seconds, fraction, seeks, plays)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return Response(status_code=204)

    # ------------------------------------------------------------------ clips
    def rater_clips(rater_id: str) -> frozenset[str]:
        clips = clip_cache.get(rater_id)
        if clips is None:
            names = {store.item(a.item_id).clip_name for a in store.assignments(rater_id)}
            clips = clip_cache[rater_id] = frozenset(n for n in names if n)
        return clips

    @app.get("/clip/{clip_name}")
    def clip(clip_name: str, request: Request, s=Depends(rater_session)):
        # only names the store recorded for one of this rater's items resolve; the request's text
        # is never joined to a path (store.clip_file looks the name up in the study)
        if clip_name not in rater_clips(s.rater_id):
            raise HTTPException(404, "no such clip")
        path = store.clip_file(clip_name)
        if path is None:
            raise HTTPException(404, "no such clip")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    # ------------------------------------------------------------------ admin
    @app.get("/admin")
    def admin(request: Request, s=Depends(admin_session)):
        board = store.dashboard()
        return render(request, "admin.html", session=s, board=board)

    return app
