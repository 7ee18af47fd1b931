"""A small Label Studio REST client with retries, used by push and pull.

    >>> from curate.labeling.client import connect
    >>> client = connect()          # LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY, or the `curate studio up` server
    >>> client.whoami()["email"]    # doctest: +SKIP
    'admin@curate.local'

Connection errors and 5xx answers are retried with exponential backoff; 401/403 become a ServerError that says
the token is wrong; a server that is down becomes a ServerError that says how to start one. The token is sent
in a header only; it never appears in messages or logs.
"""

from __future__ import annotations

import json as _json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx
import orjson

from curate.errors import ServerError

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = Path(".curate") / "studio"
RETRY_STATUS = {500, 502, 503, 504}
SPLIT_MIN_TASKS = 2000  # an export is cut into parts (one per server process) from this many tasks on


class TransientServerError(ServerError):
    """The server could not be reached or kept answering 5xx: the request may or may not have taken effect."""


class StudioClient:
    """Thin wrapper over Label Studio's REST API (1.23): projects, validation, import, export, annotations."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 300.0,
        readers: list[str] | tuple[str, ...] = (),
    ):
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"Label Studio URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        # more server processes on the same data (`curate studio up` starts one): an export's parts go to them
        self.readers = [r.rstrip("/") for r in readers if r.startswith(("http://", "https://"))]
        # a personal access token is a JWT refresh token: it buys 5-minute access tokens (refreshed on 401);
        # a legacy token is sent as it is
        self._refresh = token if token.count(".") == 2 and token.startswith("eyJ") else None
        auth = (
            None
            if self._refresh
            else (token if token.startswith(("Token ", "Bearer ")) else f"Token {token}")
        )
        # a dead URL fails fast: connecting gets CONNECT_TIMEOUT_S, and a server never reached gets
        # FIRST_CONTACT_TRIES tries (reads keep `timeout`: exports can take minutes)
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": auth} if auth else {},
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S),
        )
        self._reached = False
        if self._refresh:
            self._renew_access()

    def _renew_access(self) -> None:
        try:
            r = self._http.post("/api/token/refresh/", json={"refresh": self._refresh})
        except httpx.TransportError as err:
            raise TransientServerError(
                f"cannot reach Label Studio at {self.url} ({type(err).__name__}); is it running?"
            ) from None
        if r.status_code != 200 or "access" not in r.json():
            raise ServerError(
                f"Label Studio at {self.url} refused the personal access token (HTTP "
                f"{r.status_code}); create a new one in Account & Settings"
            )
        self._http.headers["Authorization"] = f"Bearer {r.json()['access']}"

    def __repr__(self) -> str:  # never shows the token
        return f"StudioClient({self.url!r})"

    def _sibling(self, url: str) -> StudioClient:
        """A client for another process of the same server (same credentials), quick to give up when it is down."""
        c = object.__new__(StudioClient)
        c.url, c.retries, c.backoff, c.readers = url, 1, 0.2, []
        c._refresh = self._refresh
        c._http = httpx.Client(base_url=url, headers=dict(self._http.headers), timeout=self._http.timeout)
        return c

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retry: bool = True,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One API call; retries connection errors and 5xx with backoff (when `retry`), raises ServerError."""
        content = orjson.dumps(json) if json is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempts = self.retries + 1 if retry else 1
        last: str = ""
        for attempt in range(attempts):
            if attempt >= FIRST_CONTACT_TRIES and not getattr(self, "_reached", True):
                break  # never answered: a wrong URL or a stopped server, not a hiccup
            if attempt:
                delay = self.backoff * (2 ** (attempt - 1))
                log.info("retrying %s %s in %.1f s (%s)", method, path, delay, last)
                time.sleep(delay)
            try:
                r = self._http.request(method, path, content=content, params=params, headers=headers)
            except httpx.TransportError as err:
                last = f"{type(err).__name__}: {err}"
                continue
            self._reached = True
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code == 401 and self._refresh and not getattr(self, "_renewing", False):
                self._renewing = True
                try:
                    self._renew_access()
                    r = self._http.request(method, path, content=content, params=params, headers=headers)
                finally:
                    self._renewing = False
            if r.status_code in (401, 403):
                raise ServerError(
                    f"Label Studio at {self.url} refused the API token (HTTP {r.status_code}); "
                    "check LABEL_STUDIO_API_KEY (a legacy token; enable legacy tokens in the "
                    "organization settings) or restart with `curate studio up`"
                )
            if r.status_code >= 400 and r.status_code not in ok:
                raise ServerError(
                    f"Label Studio answered {method} {path} with HTTP {r.status_code}: {_short(r.text)}"
                )
            return r
        if last.startswith("HTTP"):
            raise TransientServerError(
                f"Label Studio at {self.url} kept failing on {method} {path} ({last}) after "
                f"{attempts} attempts"
            )
        raise TransientServerError(
            f"cannot reach Label Studio at {self.url} ({last}); is it running? start one with "
            "`curate studio up` or set LABEL_STUDIO_URL to a running server"
        )

    def get_json(self, path: str, **params: Any) -> Any:
        return orjson.loads(self.request("GET", path, params=params or None).content)

    # ------------------------------------------------------------ API

    def whoami(self) -> dict[str, Any]:
        return self.get_json("/api/current-user/whoami")

    def version(self) -> dict[str, Any]:
        return self.get_json("/api/version")

    def validate_config(self, label_config: str) -> list[str]:
        """The server's own validation of a config; returns the problems (empty when valid)."""
        r = self.request("POST", "/api/projects/validate/", json={"label_config": label_config}, ok=(400,))
        if r.status_code == 400:
            body = r.json()
            if isinstance(body, dict):
                msgs = body.get("label_config") or body.get("validation_errors") or body
                return [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
            return [str(body)]
        return []

    def projects(self) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            r = self.request("GET", "/api/projects/", params={"page": page, "page_size": 100}, ok=(404,))
            if r.status_code == 404:
                return
            body = r.json()
            items = body.get("results", []) if isinstance(body, dict) else body
            yield from items
            if not isinstance(body, dict) or not body.get("next"):
                return
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self.get_json(f"/api/projects/{project_id}/")

    def create_project(self, **fields: Any) -> dict[str, Any]:
        return self.request("POST", "/api/projects/", json=fields, retry=False).json()

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/projects/{project_id}/", json=fields).json()

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import a batch of tasks in one request (not retried: the caller re-checks the server first)."""
        r = self.request(
            "POST",
            f"/api/projects/{project_id}/import",
            json=tasks,
            params={"return_task_ids": "true", "commit_to_project": "true"},
            retry=False,
        )
        return list(r.json().get("task_ids") or [])

    def task_data(self, project_id: int, *, page_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Every task of a project as {"id", "data", "meta"} (paged through the tasks API)."""
        page = 1
        while True:
            r = self.request(
                "GET",
                "/api/tasks/",
                params={
                    "project": project_id,
                    "page": page,
                    "page_size": page_size,
                    "include": "id,data,meta",
                },
                ok=(404,),
            )
            if r.status_code == 404:
                return
            body = orjson.loads(r.content)
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            for t in tasks:
                yield {"id": t["id"], "data": t.get("data", {}), "meta": t.get("meta") or {}}
            total = body.get("total") if isinstance(body, dict) else None
            if not tasks or (total is not None and page * page_size >= total):
                return
            page += 1

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return self.request(
            "POST", f"/api/tasks/{task_id}/annotations/", json={"result": result, **extra}, retry=False
        ).json()

    def export_snapshot(
        self,
        project_id: int,
        *,
        annotated_only: bool = True,
        updated_after: str | None = None,
        parts: int | None = None,
        skipped_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Every (annotated) task with its annotations, through the snapshot API, downloaded as JSON.

        `updated_after` (a server timestamp, ISO 8601) keeps the tasks updated after it (Label Studio bumps a
        task's `updated_at` when an annotation on it is saved). From SPLIT_MIN_TASKS tasks on, the export is cut
        into `parts` ranges of task ids (default: one per server process, see `readers`), exported at once, each
        by its own process; a reader that fails hands its part to the main server. Tasks come back in id order.
        `skipped_only=True` exports the tasks with a skipped annotation instead (not split).
        """
        if skipped_only:
            return sorted(
                self._export_part(project_id, False, [], None, skipped_only=True),
                key=lambda t: t.get("id") or 0,
            )
        filters: list[dict[str, Any]] = []
        if updated_after:
            filters.append(
                {
                    "filter": "filter:tasks:updated_at",
                    "operator": "greater",
                    "type": "Datetime",
                    "value": updated_after,
                }
            )
        parts = parts if parts is not None else 1 + len(self.readers)
        ranges: list[tuple[int, int] | None] = [None]
        if parts > 1:
            first = self._tasks_page(project_id, filters, ["tasks:id"])
            total = int(first.get("total") or 0)
            if total >= SPLIT_MIN_TASKS:
                lo = int(first["tasks"][0]["id"])
                hi = int(self._tasks_page(project_id, filters, ["-tasks:id"])["tasks"][0]["id"])
                cuts = [lo + (hi - lo + 1) * k // parts for k in range(parts + 1)]
                ranges = [(cuts[k], cuts[k + 1] - 1) for k in range(parts) if cuts[k + 1] > cuts[k]]
        if len(ranges) == 1:
            return sorted(
                self._export_part(project_id, annotated_only, filters, ranges[0]),
                key=lambda t: t.get("id") or 0,
            )
        urls = [self.url, *self.readers]
        results: list[list[dict[str, Any]] | BaseException | None] = [None] * len(ranges)

        def run(k: int) -> None:
            url = urls[k % len(urls)]
            try:
                if url == self.url:
                    results[k] = self._export_part(project_id, annotated_only, filters, ranges[k])
                    return
                with self._sibling(url) as sib:
                    results[k] = sib._export_part(project_id, annotated_only, filters, ranges[k])
            except TransientServerError as err:  # the reader is gone: the main server does its part
                log.warning("reader %s failed (%s); exporting its part through %s", url, err, self.url)
                try:
                    results[k] = self._export_part(project_id, annotated_only, filters, ranges[k])
                except BaseException as err2:  # noqa: BLE001 - re-raised in the caller's thread
                    results[k] = err2
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                results[k] = err

        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(ranges))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        tasks: list[dict[str, Any]] = []
        for got in results:
            if isinstance(got, BaseException):
                raise got
            tasks.extend(got or [])
        return sorted(tasks, key=lambda t: t.get("id") or 0)

    def _tasks_page(
        self, project_id: int, filters: list[dict[str, Any]], ordering: list[str]
    ) -> dict[str, Any]:
        """The first task id (in `ordering`) and the count of tasks matching `filters` (Data Manager API)."""
        query: dict[str, Any] = {"ordering": ordering}
        if filters:
            query["filters"] = {"conjunction": "and", "items": filters}
        return self.get_json(
            "/api/tasks/", project=project_id, page=1, page_size=1, include="id", query=_json.dumps(query)
        )

    def _export_part(
        self,
        project_id: int,
        annotated_only: bool,
        filters: list[dict[str, Any]],
        id_range: tuple[int, int] | None,
        *,
        skipped_only: bool = False,
    ) -> list[dict[str, Any]]:
        items = list(filters)
        if id_range is not None:
            items.append(
                {
                    "filter": "filter:tasks:id",
                    "operator": "in",
                    "type": "Number",
                    "value": {"min": id_range[0], "max": id_range[1]},
                }
            )
        view = None
        if items:  # a Data Manager tab holds the filters while the snapshot is made, then goes
            view = self.request(
                "POST",
                "/api/dm/views/",
                json={
                    "project": project_id,
                    "data": {"title": "curate pull", "filters": {"conjunction": "and", "items": items}},
                },
            ).json()
        try:
            body: dict[str, Any] = {"title": "curate pull"}
            options: dict[str, Any] = {}
            if annotated_only:
                options["annotated"] = "only"
            if skipped_only:
                options["skipped"] = "only"
            if view is not None:
                options["view"] = view["id"]
            if options:
                body["task_filter_options"] = options
            snap = self.request("POST", f"/api/projects/{project_id}/exports/", json=body).json()
            pk = snap["id"]
            deadline = time.monotonic() + 600
            while snap.get("status") not in ("completed", "failed") and time.monotonic() < deadline:
                time.sleep(0.2)
                snap = self.get_json(f"/api/projects/{project_id}/exports/{pk}")
            if snap.get("status") != "completed":
                raise ServerError(
                    f"Label Studio export {pk} of project {project_id} ended as {snap.get('status')!r}"
                )
            r = self.request(
                "GET", f"/api/projects/{project_id}/exports/{pk}/download", params={"exportType": "JSON"}
            )
            tasks = orjson.loads(r.content)
            self.request("DELETE", f"/api/projects/{project_id}/exports/{pk}", ok=(404,))
        finally:
            if view is not None:
                self.request("DELETE", f"/api/dm/views/{view['id']}/", ok=(404,))
        return tasks


CONNECT_TIMEOUT_S = 1.0
FIRST_CONTACT_TRIES = 2  # a server that never answered gets this many tries (0.5 s apart) before the error


def server_time(value: str) -> datetime:
    """A Label Studio timestamp ("2026-11-22T04:08:22.936915Z") as an aware datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


def format_server_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def connect(
    url: str | None = None, token: str | None = None, *, workspace: str | os.PathLike[str] | None = None
) -> StudioClient:
    """A client for the given server, else LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY, else `curate studio up`'s."""
    url = url or os.environ.get("LABEL_STUDIO_URL")
    token = token or os.environ.get("LABEL_STUDIO_API_KEY")
    if url and token:
        return StudioClient(
            url,
            token,
            readers=[u for u in os.environ.get("LABEL_STUDIO_READER_URLS", "").split(",") if u.strip()],
        )
    if url and not token:
        raise ServerError("LABEL_STUDIO_URL is set but LABEL_STUDIO_API_KEY is not; set the API token too")
    from curate.labeling import server

    where = Path(workspace) if workspace else DEFAULT_WORKSPACE
    found_url, found_token = server.connection(where)
    return StudioClient(found_url, token or found_token, readers=server.reader_urls(where))
