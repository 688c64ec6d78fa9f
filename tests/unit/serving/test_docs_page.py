"""The API page's own routes: the page under the service's title, Swagger UI's files from the package, nothing else."""

from __future__ import annotations

import asyncio

import httpx

from serving.protocols.docs_page import pages


def test_the_page_and_its_files():
    asyncio.run(_check(httpx.AsyncClient(transport=httpx.ASGITransport(app=pages("Digits & <clothes>")), base_url="http://test")))


async def _check(client: httpx.AsyncClient) -> None:
    async with client:
        for path in ("/", "/docs"):
            page = await client.get(path)
            assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
            assert "<title>Digits &amp; &lt;clothes&gt;</title>" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            # every script and style the page loads is one of its own files
            assert "http" not in page.text and "<script>" not in page.text
        start = await client.get("/docs/docs.js")
        assert start.headers["content-type"].startswith("text/javascript") and '"/docs.json"' in start.text
        assert "validatorUrl: null" in start.text
        bundle = await client.get("/docs/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
        again = await client.get("/docs/swagger-ui-bundle.js", headers={"If-None-Match": bundle.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert (await client.get("/docs/swagger-ui.css")).headers["content-type"].startswith("text/css")
        # the package's other files (its stock index.html points at an outside host) are not served
        assert (await client.get("/docs/index.html")).status_code == 404
        assert (await client.get("/docs/swagger-initializer.js")).status_code == 404
        wrong = await client.post("/docs")
        assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}
