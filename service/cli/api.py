"""A small HTTP client for the Lethe gateway, used by the `lethe` client commands.

It adds the bearer key, turns RFC 9457 problem responses into `ApiError` and transport
failures into one readable `ClientError`, so the commands never show a traceback.

Exceptions:
    ClientError   -- anything the command line reports as a short message (exit status 1)
    └── ApiError  -- the server answered with an error status; carries `status`, `detail`
                     and the field errors (exit status 2 for the caller's fault, 4xx; else 1)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class ClientError(Exception):
    exit_code = 1


class ApiError(ClientError):
    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.exit_code = 2 if 400 <= status < 500 else 1
        super().__init__(self.describe())

    def describe(self) -> str:
        lines = [f"error {self.status}: {self.detail}"]
        for error in self.errors:
            line = f"{error.get('field', '?')}: {error.get('message', '')}"
            if line not in self.detail:  # a lone field error is often the detail itself
                lines.append(f"  {line}")
        if self.status == 401:
            lines.append("  (set LETHE_API_KEY to a key the server accepts)")
        return "\n".join(lines)


def problem_of(response: httpx.Response) -> ApiError:
    """The server's problem+json as an ApiError; any other body is shown shortened."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        return ApiError(response.status_code, str(detail), errors)
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, text)


class Api:
    def __init__(self, url: str, api_key: str | None, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT, transport=transport)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Api":
        return cls(environ.get("LETHE_URL") or DEFAULT_URL, environ.get("LETHE_API_KEY") or None)

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params) -> dict:
        return self._json("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict | None = None) -> dict:
        return self._json("POST", path, json=body)

    def _json(self, method: str, path: str, **kwargs) -> dict:
        with self.reaching_server():
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise problem_of(response)
        return response.json()

    @contextmanager
    def stream(self, path: str, headers: dict | None = None, timeout=TIMEOUT) -> Iterator[httpx.Response]:
        """A streamed GET; an error status raises ApiError before the body is used."""
        with self.reaching_server():
            with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise problem_of(response)
                yield response

    @contextmanager
    def reaching_server(self) -> Iterator[None]:
        """Report transport failures as one line that names the server."""
        try:
            yield
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ClientError(f"LETHE_URL is not a usable http(s) URL: {self.url!r} ({exc})") from None
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot connect to the Lethe server at {self.url} ({_reason(exc)}); "
                "is it running, and is LETHE_URL right?"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the Lethe server at {self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise ClientError(f"lost the connection to the Lethe server at {self.url} ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ")[-1]  # "[Errno 111] Connection refused" -> "Connection refused"
