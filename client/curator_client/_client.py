"""`Client` and `AsyncClient`.

Both share `_BaseClient`, which turns each API operation into a `_Call` (method, path,
body, token, how to parse the answer, whether it may be retried) and turns responses into
models or exceptions. The two subclasses only do I/O: send the request, sleep between
retries, and close the pooled httpx client.

Retries: only idempotent operations are retried — `select` (each call sends a fresh
`Idempotency-Key`, so a resent select gets the ticket the first one issued, never a
second ticket), `feedback` (the server counts an exact repeat once) and the GET reads —
on a transport error or a 502/503/504, `retries` times with exponential backoff
(`backoff`, doubled each time, honouring a numeric `Retry-After`, capped at 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import httpx

from ._errors import CuratorError, TransportError, error_from_response
from ._models import (
    AddProblemsResult,
    Bank,
    CreatedRun,
    FeedbackReceipt,
    Health,
    Result,
    RunInfo,
    Ticket,
    problem_to_json,
    result_to_json,
)
from ._runs import AsyncRun, Run
from ._version import __version__

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")

Progress = Callable[[int, "int | None"], Any]
"""`progress(sent, total)`: problems sent so far, and the total when `problems` is sized."""

ResultLike = Result | Mapping[str, Any]

_RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_DELAY = 10.0


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One HTTP exchange, described without doing I/O."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    token: str | None = None  # None: the client's own token
    retry: bool = False  # idempotent: safe to resend on transport error / 502-504
    accept: frozenset[int] = frozenset()  # non-2xx statuses parsed as an answer
    headers: tuple[tuple[str, str], ...] = ()  # sent with this call only


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise CuratorError(
            f"HTTP {response.status_code} answer is not JSON: {response.text[:200]!r}"
        ) from exc


def _parser(from_json: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    return lambda response: from_json(_json_body(response))


def _is_error_body(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return True
    return not isinstance(body, dict) or "error" in body or "status" not in body


def _parse_banks(data: Any) -> list[Bank]:
    return [Bank.from_json(b) for b in data["banks"]]


def _parse_health(response: httpx.Response) -> Health:
    return Health.from_json(_json_body(response), http_status=response.status_code)


class _AddProblemsAccumulator:
    """Sums the per-chunk answers of `add_problems`."""

    def __init__(self, problems: Iterable[Any]) -> None:
        self.total = len(problems) if isinstance(problems, Sized) else None
        self.sent = 0
        self.chunks = 0
        self.added = 0
        self.duplicates: list[str] = []
        self.problem_ids: list[int] = []
        self.size: int | None = None

    def add(self, n_sent: int, answer: AddProblemsResult, progress: Progress | None) -> None:
        self.sent += n_sent
        self.chunks += 1
        self.added += answer.added
        self.duplicates.extend(answer.duplicates)
        self.problem_ids.extend(answer.problem_ids)
        self.size = answer.size
        if progress is not None:
            progress(self.sent, self.total)

    def result(self, size: int | None = None) -> AddProblemsResult:
        final_size = self.size if size is None else size
        assert final_size is not None
        return AddProblemsResult(
            added=self.added,
            duplicates=tuple(self.duplicates),
            problem_ids=tuple(self.problem_ids),
            size=final_size,
        )


def _chunks(problems: Iterable[Mapping[str, Any]], chunk_size: int) -> Iterator[list[dict]]:
    """Lazily cut `problems` into serialised chunks of at most `chunk_size`."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    it = iter(problems)
    while chunk := list(itertools.islice(it, chunk_size)):
        yield [problem_to_json(p) for p in chunk]


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class _BaseClient:
    """Request building, retry policy and response parsing shared by both clients."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(
        self,
        base_url: str | httpx.URL,
        token: str | None,
        *,
        retries: int,
        backoff: float,
        headers: Mapping[str, str] | None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff}")
        self.base_url = str(base_url).rstrip("/")
        self.token = token
        self.retries = retries
        self.backoff = backoff
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"curator-client/{__version__}",
            **(headers or {}),
        }

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.base_url!r})"

    # -- operations, as _Call descriptions --------------------------------------------

    def _healthz_call(self) -> _Call[Health]:
        return _Call("GET", "/healthz", _parse_health, retry=True)

    def _readyz_call(self) -> _Call[Health]:
        # 503 is an answer ("not ready") here, not an error; and it must not be retried.
        return _Call("GET", "/readyz", _parse_health, accept=frozenset({503}))

    def _create_bank_call(self, name: str, embedder: str, dim: int | None) -> _Call[Bank]:
        body = _body(name=name, embedder=embedder, dim=dim)
        return _Call("POST", "/v1/banks", _parser(Bank.from_json), json=body)

    def _list_banks_call(self) -> _Call[list[Bank]]:
        return _Call("GET", "/v1/banks", _parser(_parse_banks), retry=True)

    def _get_bank_call(self, bank_id: int) -> _Call[Bank]:
        return _Call("GET", f"/v1/banks/{int(bank_id)}", _parser(Bank.from_json), retry=True)

    def _add_problems_call(self, bank_id: int, chunk: list[dict]) -> _Call[AddProblemsResult]:
        return _Call(
            "POST",
            f"/v1/banks/{int(bank_id)}/problems",
            _parser(AddProblemsResult.from_json),
            json={"problems": chunk},
        )

    def _create_run_call(
        self,
        bank_id: int,
        strategy: str,
        params: Mapping[str, Any] | None,
        seed: int | None,
        name: str | None,
    ) -> _Call[CreatedRun]:
        body = _body(
            bank_id=int(bank_id), strategy=strategy, params=dict(params or {}), seed=seed, name=name
        )
        return _Call("POST", "/v1/runs", _parser(CreatedRun.from_json), json=body)

    def _get_run_call(self, run_id: int, token: str | None) -> _Call[RunInfo]:
        return _Call(
            "GET", f"/v1/runs/{int(run_id)}", _parser(RunInfo.from_json), token=token, retry=True
        )

    def _select_call(
        self, run_id: int, batch_size: int, pool_size: int | None, token: str | None,
        idempotency_key: str | None = None,
    ) -> _Call[Ticket]:
        body = _body(batch_size=int(batch_size), pool_size=pool_size)
        key = idempotency_key or uuid.uuid4().hex  # one per call, the same for its retries
        return _Call(
            "POST", f"/v1/runs/{int(run_id)}/select", _parser(Ticket.from_json), body, token,
            retry=True, headers=(("Idempotency-Key", key),),
        )

    def _feedback_call(
        self, run_id: int, ticket_id: str, results: Iterable[ResultLike], token: str | None,
        final: bool = False,
    ) -> _Call[FeedbackReceipt]:
        body: dict[str, Any] = {"ticket_id": str(ticket_id),
                                "results": [result_to_json(r) for r in results]}
        if final:
            body["final"] = True
        return _Call(
            "POST",
            f"/v1/runs/{int(run_id)}/feedback",
            _parser(FeedbackReceipt.from_json),
            body,
            token,
            retry=True,  # the server counts identical feedback once
        )

    # -- admin inspection (plain JSON: these views are for people and dashboards) -------

    def _admin_get_call(self, path: str, **query: Any) -> _Call[Any]:
        q = {k: v for k, v in query.items() if v is not None}
        return _Call("GET", path + ("?" + urlencode(q) if q else ""), _parser(lambda d: d),
                     retry=True)

    def _list_runs_call(self) -> _Call[Any]:
        return _Call("GET", "/v1/runs", _parser(lambda d: d["runs"]), retry=True)

    def _distribution_call(self, run_id: int, by: str | None, sample: int | None,
                           top: int | None) -> _Call[Any]:
        return self._admin_get_call(f"/v1/runs/{int(run_id)}/distribution", by=by,
                                    sample=sample, top=top)

    def _history_call(self, run_id: int, by: str | None, after: int | None,
                      limit: int | None) -> _Call[Any]:
        return self._admin_get_call(f"/v1/runs/{int(run_id)}/history", by=by, after=after,
                                    limit=limit)

    def _log_metrics_call(self, run_id: int, step: int, metrics: Mapping[str, float],
                          token: str | None) -> _Call[Any]:
        body = {"step": int(step), "metrics": {str(k): float(v) for k, v in metrics.items()}}
        return _Call("POST", f"/v1/runs/{int(run_id)}/metrics", _parser(lambda d: d), body,
                     token, retry=True)  # a repeat is a replay

    def _value_call(self, run_id: int, window: int, token: str | None) -> _Call[Any]:
        return _Call("GET", f"/v1/runs/{int(run_id)}/value?window={int(window)}",
                     _parser(lambda d: d), token=token, retry=True)

    def _revoke_run_call(self, run_id: int) -> _Call[Any]:
        return _Call("POST", f"/v1/runs/{int(run_id)}/revoke", _parser(lambda d: d), json={})

    def _rotate_token_call(self, run_id: int) -> _Call[CreatedRun]:
        return _Call("POST", f"/v1/runs/{int(run_id)}/token", _parser(CreatedRun.from_json),
                     json={})

    # -- plumbing -----------------------------------------------------------------------

    def _build_request(self, call: _Call[Any]) -> httpx.Request:
        headers = dict(self._headers) | dict(call.headers)
        token = call.token if call.token is not None else self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self._http.build_request(
            call.method, self.base_url + call.path, json=call.json, headers=headers
        )

    def _retry_delay(
        self, call: _Call[Any], attempt: int, response: httpx.Response | None
    ) -> float | None:
        """Seconds to wait before resending, or None to stop. `response` None: no answer."""
        if not call.retry or attempt >= self.retries:
            return None
        if response is not None and response.status_code not in _RETRY_STATUSES:
            return None
        delay = self.backoff * 2**attempt
        if response is not None:
            with contextlib.suppress(ValueError):  # absent, or an HTTP date: ignore
                delay = max(delay, float(response.headers.get("Retry-After", "")))
        return min(delay, _MAX_DELAY)

    @staticmethod
    def _transport_error(request: httpx.Request, exc: httpx.RequestError) -> TransportError:
        return TransportError(f"{request.method} {request.url} failed: {type(exc).__name__}: {exc}")

    def _handle(self, call: _Call[T], response: httpx.Response) -> T:
        if not response.is_success and (
            response.status_code not in call.accept or _is_error_body(response)
        ):
            raise error_from_response(response)
        try:
            return call.parse(response)
        except CuratorError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CuratorError(
                f"unexpected answer to {call.method} {call.path}: {type(exc).__name__}: {exc}"
            ) from exc


class Client(_BaseClient):
    """Synchronous client; holds one pooled `httpx.Client`. Use as a context manager.

    `token` is sent as `Authorization: Bearer <token>` unless a call passes its own.
    Pass `transport` (e.g. `httpx.MockTransport`) or a ready `http_client` (which the
    caller keeps ownership of: `close()` leaves it open) to control the HTTP layer.
    """

    _http: httpx.Client

    def __init__(
        self,
        base_url: str | httpx.URL,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = 30.0,
        retries: int = 2,
        backoff: float = 0.2,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, token, retries=retries, backoff=backoff, headers=headers)
        if http_client is not None and transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections (unless the httpx client was passed in)."""
        if self._owns_http:
            self._http.close()

    _sleep = staticmethod(time.sleep)

    def _send(self, call: _Call[T]) -> T:
        request = self._build_request(call)
        attempt = 0
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._retry_delay(call, attempt, None)
                if delay is None:
                    raise self._transport_error(request, exc) from exc
            except httpx.RequestError as exc:  # decoding, redirects: not worth a retry
                raise self._transport_error(request, exc) from exc
            else:
                delay = self._retry_delay(call, attempt, response)
                if delay is None:
                    return self._handle(call, response)
                response.close()
            self._sleep(delay)
            attempt += 1

    # -- API ----------------------------------------------------------------------------

    def healthz(self) -> Health:
        """Liveness: `GET /healthz`."""
        return self._send(self._healthz_call())

    def readyz(self) -> Health:
        """Readiness: `GET /readyz`. A 503 "not ready" answer is returned (`ok` False)."""
        return self._send(self._readyz_call())

    def create_bank(self, name: str, *, embedder: str = "hash", dim: int | None = None) -> Bank:
        """Create a problem bank; `embedder` is "hash", "minilm" or "provided"."""
        return self._send(self._create_bank_call(name, embedder, dim))

    def list_banks(self) -> list[Bank]:
        return self._send(self._list_banks_call())

    def get_bank(self, bank_id: int) -> Bank:
        """One bank, with its `index` status."""
        return self._send(self._get_bank_call(bank_id))

    def add_problems(
        self,
        bank_id: int,
        problems: Iterable[Mapping[str, Any]],
        *,
        chunk_size: int = 1000,
        progress: Progress | None = None,
    ) -> AddProblemsResult:
        """Add problems (dicts with external_id, prompt, answer?, metadata?, embedding?).

        `problems` may be any iterable (a generator is consumed lazily, one chunk at a
        time); each chunk is one request and the answers are summed. On 413, lower
        `chunk_size`. `progress(sent, total)` is called after each chunk.
        """
        acc = _AddProblemsAccumulator(problems)
        for chunk in _chunks(problems, chunk_size):
            acc.add(len(chunk), self._send(self._add_problems_call(bank_id, chunk)), progress)
        if acc.chunks == 0:
            return acc.result(size=self.get_bank(bank_id).size)
        return acc.result()

    def create_run(
        self,
        bank_id: int,
        *,
        strategy: str = "uniform",
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        name: str | None = None,
    ) -> Run:
        """Create a run; returns a `Run` handle bound to the new run's token."""
        created = self._send(self._create_run_call(bank_id, strategy, params, seed, name))
        return Run(self, created.run_id, created.token, created=created)

    def run(self, run_id: int, token: str | None = None) -> Run:
        """A handle for an existing run (`token` None: use this client's token)."""
        return Run(self, run_id, token)

    def get_run(self, run_id: int, *, token: str | None = None) -> RunInfo:
        return self._send(self._get_run_call(run_id, token))

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run with its status and queue (admin)."""
        return self._send(self._list_runs_call())

    def distribution(self, run_id: int, *, by: str | None = None, sample: int | None = None,
                     top: int | None = None) -> dict[str, Any]:
        """The run's current curator distribution over its bank (admin)."""
        return self._send(self._distribution_call(run_id, by, sample, top))

    def history(self, run_id: int, *, by: str | None = None, after: int | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """One page of the run's per-step series (admin); follow `next_after`."""
        return self._send(self._history_call(run_id, by, after, limit))

    def log_metrics(self, run_id: int, step: int, metrics: Mapping[str, float], *,
                    token: str | None = None) -> dict[str, Any]:
        """Report the trainer's own numbers for a step (eval accuracy, …): the dashboard's
        comparison plots them. Retried; the same numbers again are a replay, another
        value for a kept (step, name) is a `Conflict`."""
        return self._send(self._log_metrics_call(run_id, step, metrics, token))

    def value(self, run_id: int, *, window: int = 50,
              token: str | None = None) -> dict[str, Any]:
        """Is the curriculum paying off? The curator's items against the run's uniform
        explore items over the last `window` reported tickets (0: all); admin or the
        run's token. See docs/dashboard.md and docs/api.md."""
        return self._send(self._value_call(run_id, window, token))

    def revoke_run(self, run_id: int) -> dict[str, Any]:
        """Revoke the run's token (admin)."""
        return self._send(self._revoke_run_call(run_id))

    def rotate_run_token(self, run_id: int) -> Run:
        """Issue a new token for the run (admin); the old one stops working."""
        created = self._send(self._rotate_token_call(run_id))
        return Run(self, created.run_id, created.token, created=created)

    def select(
        self,
        run_id: int,
        batch_size: int,
        pool_size: int | None = None,
        *,
        token: str | None = None,
        idempotency_key: str | None = None,
    ) -> Ticket:
        """Ask the run's curriculum for a batch: one new ticket per call.

        Retried on connection errors and 502/503/504 with the same `Idempotency-Key` (a
        fresh UUID per call unless given), so a retry whose first attempt did reach the
        server returns that attempt's ticket instead of issuing a second one."""
        return self._send(self._select_call(run_id, batch_size, pool_size, token,
                                            idempotency_key))

    def feedback(
        self,
        run_id: int,
        ticket_id: str,
        results: Iterable[ResultLike],
        *,
        token: str | None = None,
        final: bool = False,
    ) -> FeedbackReceipt:
        """Report results for some or all of a ticket's problems (`Result`s or dicts).

        The server keeps each problem's first result and applies the ticket once all its
        problems have one — or now, with what it holds, if `final` — so several ranks
        may each send their share. Retried on connection errors and 502/503/504: an
        exact repeat is answered as a replay (`receipt.replayed`); a different result
        for a problem already reported is refused (409, `ConflictError`).
        """
        return self._send(self._feedback_call(run_id, ticket_id, results, token, final))


class AsyncClient(_BaseClient):
    """Asynchronous twin of `Client` (holds one `httpx.AsyncClient`); `async with` it.

    Retry backoff sleeps with `asyncio.sleep`.
    """

    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str | httpx.URL,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = 30.0,
        retries: int = 2,
        backoff: float = 0.2,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, token, retries=retries, backoff=backoff, headers=headers)
        if http_client is not None and transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections (unless the httpx client was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def close(self) -> None:
        """Alias of `aclose()`."""
        await self.aclose()

    _sleep = staticmethod(asyncio.sleep)

    async def _send(self, call: _Call[T]) -> T:
        request = self._build_request(call)
        attempt = 0
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._retry_delay(call, attempt, None)
                if delay is None:
                    raise self._transport_error(request, exc) from exc
            except httpx.RequestError as exc:
                raise self._transport_error(request, exc) from exc
            else:
                delay = self._retry_delay(call, attempt, response)
                if delay is None:
                    return self._handle(call, response)
                await response.aclose()
            await self._sleep(delay)
            attempt += 1

    # -- API (see Client for the documentation) ----------------------------------------

    async def healthz(self) -> Health:
        return await self._send(self._healthz_call())

    async def readyz(self) -> Health:
        return await self._send(self._readyz_call())

    async def create_bank(
        self, name: str, *, embedder: str = "hash", dim: int | None = None
    ) -> Bank:
        return await self._send(self._create_bank_call(name, embedder, dim))

    async def list_banks(self) -> list[Bank]:
        return await self._send(self._list_banks_call())

    async def get_bank(self, bank_id: int) -> Bank:
        return await self._send(self._get_bank_call(bank_id))

    async def add_problems(
        self,
        bank_id: int,
        problems: Iterable[Mapping[str, Any]],
        *,
        chunk_size: int = 1000,
        progress: Progress | None = None,
    ) -> AddProblemsResult:
        acc = _AddProblemsAccumulator(problems)
        for chunk in _chunks(problems, chunk_size):
            answer = await self._send(self._add_problems_call(bank_id, chunk))
            acc.add(len(chunk), answer, progress)
        if acc.chunks == 0:
            return acc.result(size=(await self.get_bank(bank_id)).size)
        return acc.result()

    async def create_run(
        self,
        bank_id: int,
        *,
        strategy: str = "uniform",
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        name: str | None = None,
    ) -> AsyncRun:
        created = await self._send(self._create_run_call(bank_id, strategy, params, seed, name))
        return AsyncRun(self, created.run_id, created.token, created=created)

    def run(self, run_id: int, token: str | None = None) -> AsyncRun:
        return AsyncRun(self, run_id, token)

    async def get_run(self, run_id: int, *, token: str | None = None) -> RunInfo:
        return await self._send(self._get_run_call(run_id, token))

    async def list_runs(self) -> list[dict[str, Any]]:
        return await self._send(self._list_runs_call())

    async def distribution(self, run_id: int, *, by: str | None = None,
                           sample: int | None = None, top: int | None = None) -> dict[str, Any]:
        return await self._send(self._distribution_call(run_id, by, sample, top))

    async def history(self, run_id: int, *, by: str | None = None, after: int | None = None,
                      limit: int | None = None) -> dict[str, Any]:
        return await self._send(self._history_call(run_id, by, after, limit))

    async def log_metrics(self, run_id: int, step: int, metrics: Mapping[str, float], *,
                          token: str | None = None) -> dict[str, Any]:
        """See `Client.log_metrics`."""
        return await self._send(self._log_metrics_call(run_id, step, metrics, token))

    async def value(self, run_id: int, *, window: int = 50,
                    token: str | None = None) -> dict[str, Any]:
        return await self._send(self._value_call(run_id, window, token))

    async def revoke_run(self, run_id: int) -> dict[str, Any]:
        return await self._send(self._revoke_run_call(run_id))

    async def rotate_run_token(self, run_id: int) -> AsyncRun:
        created = await self._send(self._rotate_token_call(run_id))
        return AsyncRun(self, created.run_id, created.token, created=created)

    async def select(
        self,
        run_id: int,
        batch_size: int,
        pool_size: int | None = None,
        *,
        token: str | None = None,
        idempotency_key: str | None = None,
    ) -> Ticket:
        """See `Client.select` (retried with one `Idempotency-Key` per call)."""
        return await self._send(self._select_call(run_id, batch_size, pool_size, token,
                                                  idempotency_key))

    async def feedback(
        self,
        run_id: int,
        ticket_id: str,
        results: Iterable[ResultLike],
        *,
        token: str | None = None,
        final: bool = False,
    ) -> FeedbackReceipt:
        return await self._send(self._feedback_call(run_id, ticket_id, results, token, final))
