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
    Classification,
    Client,
    Encoding,
    Images,
    Interpolation,
    PathOrBytes,
    Prediction,
    Reconstruction,
    chunks,
    image_batch,
    is_picture,
    latent_batch,
    points,
    read_image,
)
from .errors import DeadlineExceededError, ServerError, UnavailableError, error_from_http
from .retry import RetryPolicy

DEFAULT_URL = "http://127.0.0.1:3000"
# Half the server's default 16 MiB body limit, so a bulk request is split long before it is refused.
BULK_CHUNK_BYTES = 8 << 20
NPY_HEADERS = {"Content-Type": "application/octet-stream"}


class HTTPClient(Client):
    """Client for the HTTP API (``POST /v1/classify`` and friends).

    ``classify`` and ``generate`` send at most ``max_batch_rows`` rows per request and
    ``classify_bulk`` at most 8 MiB per request, splitting bigger inputs; ``encode`` and ``reconstruct``
    split like ``classify``. Answers name the version by its store tag; the client reports its number
    (``version_number`` in :meth:`models`, which it reads once and again when a tag is new), as gRPC does.
    ``transport`` and ``sleep`` exist for tests (an ``httpx.MockTransport``, a fake clock).
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
        self._version_numbers: dict[str, str] = {}

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
        return _decoded_json(self._send(method, path, **kwargs))

    def _version_number(self, version: str) -> str:
        """The version number (as text) of the store tag an answer names: from ``GET /v1/models``, read again
        for a tag it did not list (a version published since). A tag no longer listed stays as it is."""
        if version.isdigit():
            return version
        if version not in self._version_numbers:
            self._version_numbers = {str(m["version"]): str(m["version_number"]) for m in self.models() if "version_number" in m}
        return self._version_numbers.get(version, version)

    def _answer(self, body: Any, *fields: str) -> tuple[str, str, list[Any]]:
        """(model, version number, the answer's ``fields``) of a JSON answer."""
        try:
            return str(body["model"]), self._version_number(str(body["version"])), [body[f] for f in fields]
        except (KeyError, TypeError) as e:
            raise ServerError(f"unexpected answer, without {e}: {str(body)[:200]}") from e

    # -- classification --------------------------------------------------------------------

    def _predictions(self, body: Any) -> list[Prediction]:
        model, version, (predictions,) = self._answer(body, "predictions")
        try:
            return [
                Prediction(
                    label=int(p["label"]),
                    probabilities=np.asarray(p["probabilities"], dtype=np.float32),
                    model=model,
                    version=version,
                    members=None
                    if "members" not in p
                    else {name: np.asarray(m["probabilities"], dtype=np.float32) for name, m in p["members"].items()},
                    confidence=None if p.get("confidence") is None else float(p["confidence"]),
                    digit=p.get("digit"),
                    reason=p.get("reason"),
                    detail=p.get("detail"),
                )
                for p in predictions
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ServerError(f"unexpected classification answer: {e!r}") from e

    def classify(self, images: Any, model: str | None = None, members: bool = False) -> list[Prediction]:
        batch = image_batch(images)
        predictions: list[Prediction] = []
        for part in chunks(len(batch), self.max_batch_rows):
            # uint8 becomes JSON ints (read as 0..255), float32 JSON floats (read as [0, 1]).
            payload = _with_model({"images": batch[part].tolist(), **({"members": True} if members else {})}, model)
            predictions += self._predictions(self._json("POST", "/v1/classify", json=payload))
        return predictions

    def classify_image(self, image: PathOrBytes, model: str | None = None, members: bool = False) -> Prediction:
        params = _with_model({"members": "true"} if members else {}, model)
        body = self._json("POST", "/v1/classify/image", params=params, files=_upload(image))
        predictions = self._predictions(body)
        if len(predictions) != 1:
            raise ServerError(f"expected one prediction for one image, got {len(predictions)}")
        return predictions[0]

    def classify_batch(self, images: Any, model: str | None = None, members: bool = False) -> Classification:
        batch = image_batch(images)
        params = _with_model({"members": "true"} if members else {}, model)
        parts: list[dict[str, np.ndarray]] = []
        name = version = ""
        for part in chunks(len(batch), BULK_CHUNK_BYTES // max(1, batch[0].nbytes)):
            rows = batch[part]
            response = self._send("POST", "/v1/classify/batch", params=params, content=_npy(rows), headers=NPY_HEADERS)
            try:
                loaded = np.load(io.BytesIO(response.content), allow_pickle=False)
                # With members the answer is an .npz: "probabilities" and one array per member.
                arrays = {key: loaded[key] for key in loaded.files} if members else {"probabilities": loaded}
            except (ValueError, OSError, AttributeError) as e:
                raise ServerError(f"/v1/classify/batch answered with a body that is not {'an .npz' if members else 'a .npy'}") from e
            if any(len(a) != len(rows) for a in arrays.values()):
                raise ServerError(f"sent {len(rows)} images, got {[len(a) for a in arrays.values()]} rows back")
            parts.append(arrays)
            name = response.headers.get("X-Model", model or "")
            version = self._version_number(response.headers.get("X-Model-Version", ""))
        joined = {key: np.concatenate([p[key] for p in parts]).astype(np.float32, copy=False) for key in parts[0]}
        probabilities = joined.pop("probabilities")
        return Classification(probabilities, name, version, joined if members else None)

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
        axes: bool = False,
    ) -> bytes:
        params = _with_model({"n": n, "scale": scale, "dims": _csv(dims)}, model)
        if fixed is not None:
            params["fixed"] = ",".join(repr(float(v)) for v in fixed)
        if axes:
            params["axes"] = "true"
        response = self._send("GET", "/v1/generate/manifold", params=params)
        return response.content

    # -- encode, reconstruct, interpolate --------------------------------------------------

    def _image_bodies(self, images: Images, split: bool) -> list[dict[str, Any]]:
        """The request bodies that carry ``images``: one upload of a picture file, or ``.npy`` arrays of at
        most ``max_batch_rows`` rows each (``split``; otherwise all rows in one)."""
        if is_picture(images):
            return [{"files": _upload(images)}]
        batch = image_batch(images)
        size = self.max_batch_rows if split else len(batch)
        return [{"content": _npy(batch[part]), "headers": NPY_HEADERS} for part in chunks(len(batch), size)]

    def encode(self, images: Images, model: str | None = None) -> Encoding:
        params = _with_model({}, model)
        answers = [
            self._answer(self._json("POST", "/v1/encode", params=params, **body), "z_mean", "z_log_var")
            for body in self._image_bodies(images, True)
        ]
        name, version, _ = answers[-1]
        z_mean, z_log_var = (_floats([a[2][i] for a in answers], np.float32) for i in (0, 1))
        return Encoding(name, version, z_mean, z_log_var)

    def reconstruct(self, images: Images, model: str | None = None) -> Reconstruction:
        params = _with_model({"format": "array"}, model)
        fields = ("loss", "reconstruction_loss", "kl", "z_mean", "images")
        answers = [
            self._answer(self._json("POST", "/v1/reconstruct", params=params, **body), *fields) for body in self._image_bodies(images, True)
        ]
        name, version, _ = answers[-1]
        loss, reconstruction_loss, kl = (_floats([a[2][i] for a in answers], np.float64) for i in (0, 1, 2))
        z_mean, decoded = (_floats([a[2][i] for a in answers], np.float32) for i in (3, 4))
        return Reconstruction(name, version, loss, reconstruction_loss, kl, z_mean, decoded)

    def reconstruct_png(self, images: Images, model: str | None = None) -> bytes:
        (body,) = self._image_bodies(images, False)
        return self._send("POST", "/v1/reconstruct", params=_with_model({"format": "png"}, model), **body).content

    def _interpolate(self, z: Any, images: Any, steps: int, model: str | None, fmt: str) -> httpx.Response:
        payload: dict[str, Any] = _with_model({"steps": steps, "format": fmt}, model)
        if z is not None:
            payload["z"] = points(z, "z").tolist()
        if images is not None:
            payload["images"] = image_batch(images).tolist()
        return self._send("POST", "/v1/generate/interpolate", json=payload)

    def interpolate(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> Interpolation:
        body = _decoded_json(self._interpolate(z, images, steps, model, "array"))
        name, version, (path, decoded) = self._answer(body, "z", "images")
        return Interpolation(name, version, _floats([path], np.float32), _floats([decoded], np.float32))

    def interpolate_png(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        return self._interpolate(z, images, steps, model, "png").content

    def interpolate_gif(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        return self._interpolate(z, images, steps, model, "gif").content

    # -- plots -----------------------------------------------------------------------------

    def plot_clusters(self, model: str | None = None, dims: Sequence[int] = (0, 1)) -> bytes:
        return self._send("GET", "/v1/plots/clusters", params=_with_model({"dims": _csv(dims)}, model)).content

    def plot_confusion(self, model: str | None = None) -> bytes:
        return self._send("GET", "/v1/plots/confusion", params=_with_model({}, model)).content

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


def _decoded_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise ServerError(f"{response.request.method} {response.request.url.path} answered with a body that is not JSON") from e


def _upload(image: PathOrBytes) -> dict[str, tuple[str, bytes, str]]:
    """The multipart field ``image`` of a picture file."""
    data, filename = read_image(image)
    return {"image": (filename, data, mimetypes.guess_type(filename)[0] or "application/octet-stream")}


def _npy(rows: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(rows), allow_pickle=False)
    return buf.getvalue()


def _csv(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def _floats(parts: list[Any], dtype: type) -> np.ndarray:
    """JSON arrays of the answers to one split request, as one array."""
    try:
        return np.concatenate([np.asarray(part, dtype=dtype) for part in parts])
    except (TypeError, ValueError) as e:
        raise ServerError(f"unexpected answer: {e!r}") from e
