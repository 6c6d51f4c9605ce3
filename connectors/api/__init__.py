"""The integrators' query API (aiohttp): ``build_app(settings)`` for tests, ``run_api(settings, stop)`` to serve.

Base path ``/v1``; the OpenAPI document at ``/v1/openapi.json`` is generated from the route table and the
pydantic bodies in ``schemas/api.py``.
"""
