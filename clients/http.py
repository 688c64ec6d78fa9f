"""The HTTP client: the service's JSON/PNG/.npy routes over one reusable httpx connection pool."""

from __future__ import annotations

import io
import mimetypes
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from .base import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Client,
    PathOrBytes,
    Prediction,
    chunks,
    image_batch,
    latent_batch,
    read_image,
)
from .errors import DeadlineExceededError, ServerError, UnavailableError, error_from_http
from .retry import RetryPolicy

DEFAULT_URL = "http://127.0.0.1:3000"
# Half the server's default 16 MiB body limit, so a bulk request is split long before it is refused.
BULK_CHUNK_BYTES = 8 << 20


class HTTPClient(Client):
    """Client for the HTTP API (``POST /v1/classify`` and friends).

    ``classify`` and ``generate`` send at most ``max_batch_rows`` rows per request and
    ``classify_bulk`` at most 8 MiB per request, splitting bigger inputs. ``transport`` and
    ``sleep`` exist for tests (an ``httpx.MockTransport``, a fake clock).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        *,
        backoff: float = DEFAULT_BACKOFF,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry = RetryPolicy(retries=retries, base=backoff)
        self.max_batch_rows = max_batch_rows
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"HTTPClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise UnavailableError(f"cannot connect to {self.url}: {type(e).__name__}") from e
        except httpx.TimeoutException as e:
            raise DeadlineExceededError(f"no answer from {self.url} within {self.timeout:g} s") from e
        except httpx.TransportError as e:
            # Refused or dropped connections: the server is down, restarting or closed a kept-alive socket.
            raise UnavailableError(f"cannot reach {self.url}: {e or type(e).__name__}") from e
        if response.is_success:
            return response
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        raise error_from_http(response.status_code, body, response.reason_phrase)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.retry.call(lambda: self._send_once(method, path, **kwargs), sleep=self._sleep)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as e:
            raise ServerError(f"{method} {path} answered with a body that is not JSON") from e

    # -- classification --------------------------------------------------------------------

    def _predictions(self, body: Any) -> list[Prediction]:
        try:
            model, version = str(body["model"]), str(body["version"])
            return [
                Prediction(
                    label=int(p["label"]),
                    probabilities=np.asarray(p["probabilities"], dtype=np.float32),
                    model=model,
                    version=version,
                )
                for p in body["predictions"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise ServerError(f"unexpected classification answer: {e!r}") from e

    def classify(self, images: Any, model: str | None = None) -> list[Prediction]:
        batch = image_batch(images)
        predictions: list[Prediction] = []
        for part in chunks(len(batch), self.max_batch_rows):
            # uint8 becomes JSON ints (read as 0..255), float32 JSON floats (read as [0, 1]).
            payload: dict[str, Any] = {"images": batch[part].tolist()}
            if model is not None:
                payload["model"] = model
            predictions += self._predictions(self._json("POST", "/v1/classify", json=payload))
        return predictions

    def classify_image(self, image: PathOrBytes, model: str | None = None) -> Prediction:
        data, filename = read_image(image)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        params = {} if model is None else {"model": model}
        body = self._json("POST", "/v1/classify/image", params=params, files={"image": (filename, data, content_type)})
        predictions = self._predictions(body)
        if len(predictions) != 1:
            raise ServerError(f"expected one prediction for one image, got {len(predictions)}")
        return predictions[0]

    def classify_bulk(self, images: Any, model: str | None = None) -> np.ndarray:
        batch = image_batch(images)
        params = {} if model is None else {"model": model}
        parts = []
        for part in chunks(len(batch), BULK_CHUNK_BYTES // max(1, batch[0].nbytes)):
            rows = np.ascontiguousarray(batch[part])
            buf = io.BytesIO()
            np.save(buf, rows, allow_pickle=False)
            response = self._send(
                "POST",
                "/v1/classify/batch",
                params=params,
                content=buf.getvalue(),
                headers={"Content-Type": "application/octet-stream"},
            )
            try:
                probs = np.load(io.BytesIO(response.content), allow_pickle=False)
            except ValueError as e:
                raise ServerError("/v1/classify/batch answered with a body that is not a .npy array") from e
            if len(probs) != len(rows):
                raise ServerError(f"sent {len(rows)} images, got {len(probs)} rows back")
            parts.append(probs.astype(np.float32, copy=False))
        return np.concatenate(parts)

    # -- generation ------------------------------------------------------------------------

    def _images(self, body: Any) -> np.ndarray:
        try:
            return np.asarray(body["images"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise ServerError(f"unexpected generation answer: {e!r}") from e

    def generate(self, z: Any, model: str | None = None) -> np.ndarray:
        points = latent_batch(z)
        parts = [
            self._images(self._json("POST", "/v1/generate", json=_with_model({"z": points[part].tolist(), "format": "array"}, model)))
            for part in chunks(len(points), self.max_batch_rows)
        ]
        return np.concatenate(parts)

    def sample(self, n: int, seed: int, model: str | None = None) -> np.ndarray:
        payload = _with_model({"n": n, "seed": seed, "format": "array"}, model)
        return self._images(self._json("POST", "/v1/generate/sample", json=payload))

    def manifold(
        self,
        model: str | None = None,
        n: int = 30,
        scale: float = 2.0,
        dims: Sequence[int] = (0, 1),
        fixed: Sequence[float] | None = None,
    ) -> bytes:
        params = _with_model({"n": n, "scale": scale, "dims": ",".join(str(d) for d in dims)}, model)
        if fixed is not None:
            params["fixed"] = ",".join(repr(float(v)) for v in fixed)
        response = self._send("GET", "/v1/generate/manifold", params=params)
        return response.content

    # -- discovery -------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        body = self._json("GET", "/v1/models")
        if not isinstance(body, dict) or not isinstance(body.get("models"), list):
            raise ServerError("GET /v1/models answered without a 'models' list")
        return body["models"]

    def health(self) -> dict[str, bool]:
        return {"live": self._probe("/livez"), "ready": self._probe("/readyz")}

    def _probe(self, path: str) -> bool:
        # Health reports the state right now: no retries, and any failure means "no".
        try:
            return self._http.get(path).status_code == 200
        except httpx.HTTPError:
            return False


def _with_model(fields: dict[str, Any], model: str | None) -> dict[str, Any]:
    """Request fields plus ``model`` when one is named (none: the server's default for the task)."""
    return fields if model is None else {**fields, "model": model}
