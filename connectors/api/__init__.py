"""The integrators' query API (aiohttp): ``build_app(state)`` for tests, ``ApiRole`` to serve (``ops/root.py``).

Base path ``/v1``; the OpenAPI document at ``/v1/openapi.json`` is generated from the route table and the
pydantic bodies in ``schemas/api.py``.
"""
